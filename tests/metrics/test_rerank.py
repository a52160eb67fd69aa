import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from lfm.metrics import k_reciprocal_rerank, k_reciprocal_rerank_features, pairwise_distance

REFERENCE = Path(__file__).resolve().parents[2] / "benchmarks" / "reference_rerank.py"


def reference_rerank(*args, **kwargs):
    spec = importlib.util.spec_from_file_location("reference_rerank", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_rerank(*args, **kwargs)


def clustered(seed: int, num_query: int, num_gallery: int, dim: int = 16, num_ids: int = 20):
    """Features around identity centres: neighbour sets of every size, few exact ties."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids, dim))
    features = centres[rng.integers(0, num_ids, num_query + num_gallery)]
    features = features + rng.standard_normal(features.shape)
    return torch.from_numpy(features.astype(np.float32)).split([num_query, num_gallery])


def distance_matrices(query, gallery, distance="euclidean"):
    return tuple(pairwise_distance(a, b, distance) for a, b in ((query, gallery), (query, query), (gallery, gallery)))


def assert_agrees(ours: np.ndarray, reference: np.ndarray):
    assert np.abs(ours - reference).max() <= 1e-4
    assert (np.argsort(ours, axis=1)[:, :10] == np.argsort(reference, axis=1)[:, :10]).all()


@pytest.mark.parametrize(
    ("seed", "num_query", "num_gallery", "k1", "k2", "lambda_value"),
    [
        (0, 40, 200, 20, 6, 0.3),
        (1, 60, 300, 20, 6, 0.3),
        (2, 30, 150, 5, 1, 0.5),
        (3, 30, 150, 7, 3, 0.1),
        (4, 25, 120, 20, 30, 0.3),
    ],
)
def test_agrees_with_the_reference_implementation(seed, num_query, num_gallery, k1, k2, lambda_value):
    distances = distance_matrices(*clustered(seed, num_query, num_gallery))
    reference = reference_rerank(*(d.numpy() for d in distances), k1=k1, k2=k2, lambda_value=lambda_value)
    ours = k_reciprocal_rerank(*distances, k1=k1, k2=k2, lambda_value=lambda_value)
    assert ours.shape == (num_query, num_gallery) and ours.dtype == torch.float32
    assert_agrees(ours.numpy(), reference)


def test_numpy_inputs_and_cosine_distances_agree_with_the_reference():
    distances = tuple(d.numpy() for d in distance_matrices(*clustered(5, 40, 160), "cosine"))
    assert_agrees(k_reciprocal_rerank(*distances).numpy(), reference_rerank(*distances))


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_features_entry_equals_the_distance_entry(distance):
    query, gallery = clustered(6, 50, 220)
    expected = k_reciprocal_rerank(*distance_matrices(query, gallery, distance))
    reranked = k_reciprocal_rerank_features(query, gallery, distance=distance)
    torch.testing.assert_close(reranked.dense(), expected, atol=1e-5, rtol=0)
    some = torch.tensor([7, 0, 49, 7])
    torch.testing.assert_close(reranked.rows(some), expected[some], atol=1e-5, rtol=0)


def test_small_chunks_give_the_same_distance(monkeypatch):
    query, gallery = clustered(7, 50, 220)
    expected = k_reciprocal_rerank_features(query, gallery).dense()
    monkeypatch.setattr("lfm.metrics.rerank._CHUNK_ELEMENTS", 300)
    torch.testing.assert_close(k_reciprocal_rerank_features(query, gallery).dense(), expected, atol=1e-6, rtol=0)


def test_lambda_one_is_the_normalised_squared_distance():
    q_g, q_q, g_g = distance_matrices(*clustered(8, 20, 80))
    final = k_reciprocal_rerank(q_g, q_q, g_g, lambda_value=1.0)
    column_max = torch.cat([q_q, q_g.T]).square().amax(dim=0)  # item i's largest squared distance
    torch.testing.assert_close(final, q_g.square() / column_max[:, None])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k1": 0}, "k1 must be a positive int"),
        ({"k2": 2.5}, "k2 must be a positive int"),
        ({"lambda_value": 1.5}, r"lambda_value must be in \[0, 1\]"),
        ({"k1": 500}, "must not exceed the 100"),
    ],
)
def test_bad_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        k_reciprocal_rerank(*distance_matrices(*clustered(9, 20, 80)), **kwargs)


def test_bad_shapes_and_values_raise():
    q_g, q_q, g_g = distance_matrices(*clustered(10, 20, 80))
    with pytest.raises(ValueError, match=r"q_q_dist must be \(20, 20\)"):
        k_reciprocal_rerank(q_g, g_g, q_q)
    with pytest.raises(ValueError, match="g_g_dist contains NaN"):
        k_reciprocal_rerank(q_g, q_q, g_g * float("nan"))
    with pytest.raises(ValueError, match="same feature size"):
        k_reciprocal_rerank_features(torch.randn(5, 4), torch.randn(30, 3))
