import json

import numpy as np
import pytest
import torch

from lfm.errors import InputError
from lfm.metrics import evaluate_features
from lfm.metrics.__main__ import main
from lfm.metrics.features_file import load_features, save_features


def samples(num: int = 90, dim: int = 8):
    generator = torch.Generator().manual_seed(0)
    pids = torch.randint(1, 8, (num,), generator=generator)
    centres = torch.randn(8, dim, generator=generator)
    return {
        "features": centres[pids] + 0.7 * torch.randn(num, dim, generator=generator),
        "pids": pids,
        "camids": torch.randint(1, 4, (num,), generator=generator),
        "is_query": torch.arange(num) < 30,
        "index": torch.arange(num),
    }


@pytest.fixture
def feature_file(tmp_path):
    settings = {"distance": "euclidean", "ap": "trapezoid", "rerank_settings": {"k1": 6, "k2": 2}}
    paths = [f"images/{i:04d}_c1.jpg" for i in range(90)]
    return save_features(tmp_path / "features.npz", samples(), paths, settings), samples()


def test_round_trip_keeps_every_array_and_path(feature_file):
    path, data = feature_file
    loaded = load_features(path)
    np.testing.assert_array_equal(loaded.query_features, data["features"][:30].numpy())
    np.testing.assert_array_equal(loaded.gallery_pids, data["pids"][30:].numpy())
    assert loaded.query_paths[0] == "images/0000_c1.jpg" and loaded.gallery_paths[-1] == "images/0089_c1.jpg"
    assert loaded.settings["ap"] == "trapezoid"
    with np.load(path, allow_pickle=False) as raw:  # plain arrays: readable without pickle
        assert raw["query_camids"].shape == (30,)


def test_command_line_reproduces_the_evaluation_with_the_files_settings(feature_file, capsys):
    path, data = feature_file
    q, g = data["is_query"], ~data["is_query"]
    ids = (data["pids"][q], data["pids"][g], data["camids"][q], data["camids"][g])
    plain = evaluate_features(data["features"][q], data["features"][g], *ids, distance="euclidean", ap="trapezoid")
    reranked = evaluate_features(
        data["features"][q], data["features"][g], *ids, distance="euclidean", ap="trapezoid", rerank={"k1": 6, "k2": 2}
    )
    main([str(path), "--rerank", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["mAP"] == plain["mAP"] and printed["mINP"] == plain["mINP"]
    assert printed["rerank/mAP"] == reranked["mAP"] and printed["rerank/rank1"] == reranked["rank1"]
    main([str(path), "--rerank", "--k1", "4"])
    assert "Re-ranked: rank1=" in capsys.readouterr().out


@pytest.mark.parametrize("content", [None, b"{}", "npz-without-arrays"])
def test_a_file_that_is_no_feature_file_gives_one_line(tmp_path, content, capsys):
    path = tmp_path / "features.npz"
    if content == "npz-without-arrays":
        np.savez(path, other=np.zeros(3))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=str(path)):
        load_features(path)
    with pytest.raises(SystemExit) as stop:
        main([str(path)])
    assert stop.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
