import numpy as np
import pytest
import torch
from torchmetrics.utilities import dim_zero_cat

from lfm.metrics import ReIDRankingMetric, evaluate_features, evaluate_ranking, k_reciprocal_rerank, pairwise_distance

# Hand-computed example. Gallery items (pid, camera):
#   g0 (1, c1)  g1 (1, c2)  g2 (1, c3)  g3 (2, c1)  g4 (-1, c2) junk  g5 (0, c3) distractor
#   g6 (3, c1)  g7 (2, c2)
HAND_G_PIDS = [1, 1, 1, 2, -1, 0, 3, 2]
HAND_G_CAMS = [1, 2, 3, 1, 2, 3, 1, 2]
# Queries: A (1, c1), B (2, c2), C (3, c1), D (1, c2).
HAND_Q_PIDS = [1, 2, 3, 1]
HAND_Q_CAMS = [1, 2, 1, 2]
HAND_DISTMAT = [
    # A: g0 same pid+cam and g4 junk dropped -> g5, g1*, g3, g6, g2*, g7: matches at ranks 2 and 5.
    [0.10, 0.40, 0.70, 0.50, 0.20, 0.30, 0.60, 0.80],
    # B: g4 junk, g7 same pid+cam dropped -> g0, g1, g3*, ...: match at rank 3.
    [0.20, 0.30, 0.80, 0.40, 0.10, 0.50, 0.60, 0.15],
    # C: its only pid-3 item g6 shares its camera -> no match, skipped.
    [0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.10, 0.80],
    # D: g1 same pid+cam dropped -> g2*, g5, g0*, g3, g6, g7 (g4 junk): matches at ranks 1 and 3.
    [0.40, 0.10, 0.20, 0.50, 0.60, 0.30, 0.70, 0.80],
]
# First-match ranks A 2, B 3, D 1 -> CMC@1..5 = 1/3, 2/3, 1, 1, 1.
HAND_CMC = [1 / 3, 2 / 3, 1.0, 1.0, 1.0]
# Standard AP: A (1/2 + 2/5)/2 = 0.45, B 1/3, D (1/1 + 2/3)/2 = 5/6 -> mAP (0.45 + 1/3 + 5/6)/3 = 97/180.
HAND_MAP_STANDARD = 97 / 180
# Trapezoid AP, per match (old_precision + precision)/2 / ngood:
#   A: r=1: (0 + 1/2)/2, r=4: (1/4 + 2/5)/2 -> (0.25 + 0.325)/2 = 0.2875
#   B: r=2: (0 + 1/3)/2 = 1/6
#   D: r=0: (1 + 1)/2, r=2: (1/2 + 2/3)/2 -> (1 + 7/12)/2 = 19/24
# mAP = (0.2875 + 1/6 + 19/24)/3 = 299/720.
HAND_MAP_TRAPEZOID = 299 / 720
# mINP: matches found over the rank of the last one: A 2/5, B 1/3, D 2/3 -> (2/5 + 1/3 + 2/3)/3 = 7/15.
HAND_MINP = 7 / 15


def hand_inputs() -> tuple[np.ndarray, ...]:
    return (
        np.array(HAND_DISTMAT),
        np.array(HAND_Q_PIDS),
        np.array(HAND_G_PIDS),
        np.array(HAND_Q_CAMS),
        np.array(HAND_G_CAMS),
    )


def reference_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, ap):
    """Per-query loop over a stable full argsort (torchreid AP, or layumi's trapezoid AP; fast-reid's mINP)."""
    all_cmc, all_ap, all_inp = [], [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q], kind="stable")
        keep = (g_pids[order] != -1) & ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        is_match = (g_pids[order] == q_pids[q])[keep]
        if not is_match.any():
            continue
        cmc = np.minimum(np.cumsum(is_match), 1)
        cmc = np.concatenate([cmc, np.ones(max(0, max_rank - cmc.size))])[:max_rank]
        all_cmc.append(cmc)
        rows_good = np.flatnonzero(is_match)
        ngood = rows_good.size
        all_inp.append(ngood / (rows_good[-1] + 1))
        if ap == "standard":
            all_ap.append(sum((i + 1) / (r + 1) for i, r in enumerate(rows_good)) / ngood)
        else:
            total = 0.0
            for i, r in enumerate(rows_good):
                precision = (i + 1) / (r + 1)
                old_precision = i / r if r != 0 else 1.0
                total += (old_precision + precision) / 2 / ngood
            all_ap.append(total)
    return np.mean(all_cmc, axis=0), float(np.mean(all_ap)), len(all_ap), float(np.mean(all_inp))


def random_inputs(seed: int, num_q: int = 50, num_g: int = 300, dtype=np.float64):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(-1, 20, num_q)
    g_pids = rng.integers(-1, 20, num_g)
    q_camids = rng.integers(1, 7, num_q)
    g_camids = rng.integers(1, 7, num_g)
    distmat = rng.random((num_q, num_g)).astype(dtype)
    return distmat, q_pids, g_pids, q_camids, g_camids


def assert_matches_reference(inputs, max_rank, ap):
    result = evaluate_ranking(*inputs, max_rank=max_rank, ap=ap)
    cmc, mean_ap, num_valid, mean_inp = reference_ranking(*inputs, max_rank=max(max_rank, 10), ap=ap)
    np.testing.assert_allclose(result["cmc"].numpy(), cmc[:max_rank], atol=1e-6, rtol=0)
    for k in (1, 5, 10):
        assert result[f"rank{k}"] == pytest.approx(cmc[k - 1], abs=1e-6)
    assert result["mAP"] == pytest.approx(mean_ap, abs=1e-6)
    assert result["mINP"] == pytest.approx(mean_inp, abs=1e-6)
    assert result["num_valid_queries"] == num_valid


@pytest.mark.parametrize("as_torch", [False, True])
def test_hand_computed_example(as_torch):
    inputs = hand_inputs()
    if as_torch:
        inputs = tuple(torch.as_tensor(x) for x in inputs)
    standard = evaluate_ranking(*inputs, max_rank=5)
    trapezoid = evaluate_ranking(*inputs, max_rank=5, ap="trapezoid")
    np.testing.assert_allclose(standard["cmc"].numpy(), HAND_CMC, atol=1e-12)
    assert (standard["rank1"], standard["rank5"], standard["rank10"]) == pytest.approx((1 / 3, 1.0, 1.0))
    assert standard["mAP"] == pytest.approx(HAND_MAP_STANDARD)
    assert trapezoid["mAP"] == pytest.approx(HAND_MAP_TRAPEZOID)
    assert standard["mINP"] == trapezoid["mINP"] == pytest.approx(HAND_MINP)
    assert standard["num_valid_queries"] == trapezoid["num_valid_queries"] == 3
    assert isinstance(standard["mAP"], float) and isinstance(standard["num_valid_queries"], int)


@pytest.mark.parametrize("dtype", [torch.float16, torch.int64])
def test_half_and_integer_distmat_are_accepted(dtype):
    distmat, *ids = hand_inputs()
    scaled = torch.as_tensor(distmat * 100).round().to(dtype)
    assert evaluate_ranking(scaled, *ids)["mAP"] == pytest.approx(HAND_MAP_STANDARD)


def test_max_rank_beyond_gallery_repeats_last_value():
    result = evaluate_ranking(*hand_inputs(), max_rank=20)
    assert result["cmc"].shape == (20,)
    np.testing.assert_allclose(result["cmc"].numpy(), HAND_CMC + [1.0] * 15, atol=1e-12)


@pytest.mark.parametrize("ap", ["standard", "trapezoid"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_reference_on_random_inputs(seed, ap):
    assert_matches_reference(random_inputs(seed), max_rank=50, ap=ap)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trapezoid_ap_is_never_higher(seed):
    inputs = random_inputs(seed)
    assert evaluate_ranking(*inputs, ap="trapezoid")["mAP"] < evaluate_ranking(*inputs)["mAP"]


@pytest.mark.parametrize("ap", ["standard", "trapezoid"])
def test_matches_reference_float32_and_small_max_rank(ap):
    assert_matches_reference(random_inputs(7, dtype=np.float32), max_rank=3, ap=ap)


@pytest.mark.parametrize("ap", ["standard", "trapezoid"])
def test_ties_among_matches_match_stable_argsort(ap):
    distmat, q_pids, g_pids, q_camids, g_camids = random_inputs(11)
    rng = np.random.default_rng(11)
    is_match = (q_pids[:, None] == g_pids[None, :]) & (q_camids[:, None] != g_camids[None, :])
    # Matches share a few even values, everything else gets odd values: many ties, none mixed.
    distmat = np.where(is_match, 2 * rng.integers(0, 3, distmat.shape), 2 * rng.integers(0, 3, distmat.shape) + 1)
    assert_matches_reference((distmat.astype(np.float64), q_pids, g_pids, q_camids, g_camids), max_rank=10, ap=ap)


def test_non_match_tied_with_match_is_ranked_first():
    result = evaluate_ranking(np.array([[0.5, 0.5]]), np.array([1]), np.array([1, 2]), np.array([1]), np.array([2, 2]))
    assert result["rank1"] == 0.0
    assert result["mAP"] == pytest.approx(0.5)


def test_chunked_evaluation_matches_reference(monkeypatch):
    monkeypatch.setattr("lfm.metrics.reid._CHUNK_ELEMENTS", 7 * 300)
    assert_matches_reference(random_inputs(5), max_rank=50, ap="standard")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"distmat": np.zeros(4)}, "distmat must be 2-D"),
        ({"q_pids": np.zeros(5, dtype=int)}, r"4 queries and 8 gallery items but q_pids has 5 entries"),
        ({"g_camids": np.zeros(7, dtype=int)}, r"4 queries and 8 gallery items but g_camids has 7 entries"),
        ({"distmat": np.full((4, 8), np.nan)}, "NaN or infinite"),
        ({"max_rank": 0}, "max_rank must be a positive int"),
        ({"ap": "area"}, "ap must be one of"),
        ({"q_pids": np.array([7, 8, 9, 7])}, "no valid query"),
    ],
)
def test_bad_inputs_raise(override, message):
    names = ("distmat", "q_pids", "g_pids", "q_camids", "g_camids")
    kwargs = dict(zip(names, hand_inputs())) | override
    with pytest.raises(ValueError, match=message):
        evaluate_ranking(**kwargs)


def labelled_features(seed: int, num: int = 120, dim: int = 16):
    generator = torch.Generator().manual_seed(seed)
    pids = torch.randint(0, 12, (num,), generator=generator)
    centers = torch.randn(12, dim, generator=generator)
    features = centers[pids] + 0.8 * torch.randn(num, dim, generator=generator)
    camids = torch.randint(1, 5, (num,), generator=generator)
    is_query = torch.rand(num, generator=generator) < 0.25
    return features, pids, camids, is_query, torch.arange(num)


def direct_result(features, pids, camids, is_query, distance, ap="standard"):
    distmat = pairwise_distance(features[is_query], features[~is_query], distance)
    return evaluate_ranking(distmat, pids[is_query], pids[~is_query], camids[is_query], camids[~is_query], ap=ap)


def assert_same_result(actual, expected):
    torch.testing.assert_close(actual["cmc"], expected["cmc"])
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP", "num_valid_queries"):
        assert actual[key] == pytest.approx(expected[key], abs=1e-12)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_pairwise_distance_definitions(distance):
    query, gallery = torch.randn(5, 8, dtype=torch.float64), torch.randn(7, 8, dtype=torch.float64)
    q, g = query.numpy(), gallery.numpy()
    if distance == "cosine":
        expected = 1 - (q @ g.T) / np.linalg.norm(q, axis=1)[:, None] / np.linalg.norm(g, axis=1)[None, :]
    else:
        expected = np.linalg.norm(q[:, None, :] - g[None, :, :], axis=2)
    np.testing.assert_allclose(pairwise_distance(query, gallery, distance).numpy(), expected, atol=1e-10)


@pytest.mark.parametrize(("distance", "ap"), [("cosine", "standard"), ("euclidean", "trapezoid")])
def test_metric_over_batches_equals_direct_evaluation(distance, ap):
    features, pids, camids, is_query, index = labelled_features(0)
    metric = ReIDRankingMetric(distance=distance, ap=ap)
    for batch in torch.arange(features.shape[0]).split(32):
        metric.update(features[batch], pids[batch], camids[batch], is_query[batch], index[batch])
    result = metric.compute()
    assert_same_result(result, direct_result(features, pids, camids, is_query, distance, ap))
    assert 0 < result["mAP"] < 1


STATE_NAMES = ("features", "pids", "camids", "is_query", "index")


def test_metric_ddp_sync_drops_duplicate_indices():
    features, pids, camids, is_query, index = labelled_features(1)
    # Two ranks, DistributedSampler style: interleaved samples, padded by repeating the first ones.
    padded = torch.cat([index, index[:6]])
    other_rank = ReIDRankingMetric()
    other_states = []

    def all_gather(tensor, group=None):
        """Stands in for torch.distributed.all_gather: this rank's state, then the other rank's."""
        return [tensor, other_states.pop(0)]

    this_rank = ReIDRankingMetric(dist_sync_fn=all_gather, distributed_available_fn=lambda: True)
    for rank, metric in enumerate([this_rank, other_rank]):
        for batch in padded[rank::2].split(16):
            metric.update(features[batch], pids[batch], camids[batch], is_query[batch], index[batch])
    other_states.extend(dim_zero_cat(getattr(other_rank, name)) for name in STATE_NAMES)

    result = this_rank.compute()
    assert not other_states
    assert_same_result(result, direct_result(features, pids, camids, is_query, "cosine"))
    with_duplicates = direct_result(features[padded], pids[padded], camids[padded], is_query[padded], "cosine")
    assert with_duplicates["mAP"] != pytest.approx(result["mAP"])


def test_metric_without_gallery_raises():
    features, pids, camids, _, index = labelled_features(2)
    metric = ReIDRankingMetric()
    metric.update(features, pids, camids, torch.ones_like(pids, dtype=torch.bool), index)
    with pytest.raises(ValueError, match="need both query and gallery features, got 120 query and 0 gallery"):
        metric.compute()


def test_metric_rejects_bad_arguments():
    features, pids, camids, is_query, index = labelled_features(3)
    with pytest.raises(ValueError, match="distance must be one of"):
        ReIDRankingMetric(distance="manhattan")
    metric = ReIDRankingMetric()
    with pytest.raises(ValueError, match=r"features has 120 rows but camids has shape \(119,\)"):
        metric.update(features, pids, camids[:-1], is_query, index)
    with pytest.raises(ValueError, match="is_query must be a bool tensor"):
        metric.update(features, pids, camids, is_query.long(), index)
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()


def split_features(features, pids, camids, is_query):
    return features[is_query], features[~is_query], pids[is_query], pids[~is_query], camids[is_query], camids[~is_query]


@pytest.mark.parametrize(("distance", "ap"), [("cosine", "standard"), ("euclidean", "trapezoid")])
def test_evaluate_features_in_small_chunks_equals_the_dense_evaluation(monkeypatch, distance, ap):
    features, pids, camids, is_query, _ = labelled_features(2, num=300)
    expected = direct_result(features, pids, camids, is_query, distance, ap)
    monkeypatch.setattr("lfm.metrics.reid._CHUNK_ELEMENTS", 3 * 300)
    assert_same_result(evaluate_features(*split_features(features, pids, camids, is_query), distance, ap=ap), expected)


def test_evaluate_features_reranked_equals_ranking_the_reranked_distance():
    features, pids, camids, is_query, _ = labelled_features(3, num=300)
    query, gallery, *ids = split_features(features, pids, camids, is_query)
    distances = [
        pairwise_distance(a, b, "euclidean") for a, b in ((query, gallery), (query, query), (gallery, gallery))
    ]
    expected = evaluate_ranking(k_reciprocal_rerank(*distances, k1=8, k2=3), *ids)
    actual = evaluate_features(query, gallery, *ids, distance="euclidean", rerank={"k1": 8, "k2": 3})
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert actual[key] == pytest.approx(expected[key], abs=1e-6)


def test_metric_with_rerank_reports_both_rankings():
    features, pids, camids, is_query, index = labelled_features(4, num=200)
    metric = ReIDRankingMetric(distance="euclidean", rerank={"k1": 8, "k2": 3})
    metric.update(features, pids, camids, is_query, index)
    result = metric.compute()
    assert_same_result(result, direct_result(features, pids, camids, is_query, "euclidean"))
    query, gallery, *ids = split_features(features, pids, camids, is_query)
    reranked = evaluate_features(query, gallery, *ids, distance="euclidean", rerank={"k1": 8, "k2": 3})
    assert result["rerank"]["mAP"] == pytest.approx(reranked["mAP"], abs=1e-12)
    assert result["rerank"]["mAP"] != pytest.approx(result["mAP"], abs=1e-6)
