"""CUHK03-NP (labeled and detected): Market-style folders read by the market reader, errors, training."""

import json
from pathlib import Path

import pytest
from helpers import PROJECT_ROOT, assert_one_line_error, run_entry_point
from hydra import compose, initialize_config_dir
from PIL import Image

from lfm.data.market import check_layout, read_split
from lfm.errors import InputError

SPLITS = {"bounding_box_train": range(1, 7), "query": range(7, 11), "bounding_box_test": range(7, 11)}
IMAGES_PER_CAMERA = {"bounding_box_train": 2, "query": 1, "bounding_box_test": 2}


def make_cuhk03_np(root: Path) -> Path:
    """A tiny CUHK03-NP: labeled/ and detected/, each with 6 training and 4 test identities on
    cameras 1 and 2, named `<pid>_c<camera>_<image number>.png`; detected/ lacks one gallery image."""
    for subset in ("labeled", "detected"):
        for folder, pids in SPLITS.items():
            (root / subset / folder).mkdir(parents=True)
            for pid in pids:
                for camera in (1, 2):
                    for k in range(IMAGES_PER_CAMERA[folder]):
                        number = 1 + (camera - 1) * 5 + k + (5 if folder == "bounding_box_test" else 0)
                        image = Image.new("RGB", (16, 32), (30 * pid % 256, 100 * camera, 80 * k))
                        image.save(root / subset / folder / f"{pid:04d}_c{camera}_{number}.png")
    (root / "detected" / "bounding_box_test" / "0010_c2_11.png").unlink()
    return root


@pytest.fixture(scope="module")
def cuhk03_np(tmp_path_factory) -> Path:
    """Read-only."""
    return make_cuhk03_np(tmp_path_factory.mktemp("data") / "cuhk03-np")


def test_each_subset_is_a_market_style_folder(cuhk03_np):
    for subset in ("labeled", "detected"):
        check_layout(cuhk03_np / subset)
    train, query, gallery = (read_split(cuhk03_np / "labeled", split) for split in ("train", "query", "gallery"))
    assert (len(train), len(query), len(gallery)) == (6 * 2 * 2, 4 * 2, 4 * 2 * 2)
    assert {s.pid for s in train} == set(range(1, 7)) and {s.pid for s in query} == {s.pid for s in gallery}
    assert {s.camid for s in train + query + gallery} == {1, 2}
    assert train[0].path == cuhk03_np / "labeled" / "bounding_box_train" / "0001_c1_1.png"
    assert len(read_split(cuhk03_np / "detected", "gallery")) == 4 * 2 * 2 - 1


def test_the_parent_folder_names_both_subsets(cuhk03_np):
    with pytest.raises(
        InputError, match=(f"for CUHK03-NP set data.root={cuhk03_np / 'labeled'} or data.root={cuhk03_np / 'detected'}")
    ):
        check_layout(cuhk03_np)


@pytest.mark.parametrize(("option", "subset"), [("cuhk03_np_labeled", "labeled"), ("cuhk03_np_detected", "detected")])
def test_data_option_points_at_its_subset(option, subset):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        data = compose(config_name="train", overrides=[f"data={option}", "paths.data_dir=/datasets"]).data
    assert (data.name, data.layout, data.root) == (option, "market", f"/datasets/cuhk03-np/{subset}")


def test_trains_end_to_end_with_debug_fast(cuhk03_np, tmp_path):
    run_dir = tmp_path / "run"
    result = run_entry_point(
        "train.py",
        "experiment=lfm_resnet18_synthetic",
        "data=cuhk03_np_labeled",
        f"data.root={cuhk03_np / 'labeled'}",
        "debug=fast",
        "data.image_size=[32,16]",
        "data.batch_size=4",
        "data.val_ids=2",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/num_valid_queries"] == 4 * 2
    assert 0.0 <= metrics["test/mAP"] <= 1.0 and 0.0 <= metrics["val/mAP"] <= 1.0


def test_wrong_folder_gives_one_line(cuhk03_np, tmp_path):
    result = run_entry_point(
        "train.py",
        "data=cuhk03_np_labeled",
        f"data.root={cuhk03_np}",
        "debug=fast",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_one_line_error(
        result, f"data.root={cuhk03_np} is missing bounding_box_train/", f"data.root={cuhk03_np / 'labeled'}"
    )
