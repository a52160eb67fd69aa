"""The MSMT17 layout (V1 and V2 releases): list files, two-digit cameras, errors, training on it."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import assert_one_line_error, run_entry_point
from PIL import Image

from lfm.data import msmt17
from lfm.data.datamodule import ReIDDataModule
from lfm.errors import InputError

RELEASE_FOLDERS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}
CAMERAS = (3, 12)  # one one-digit and one two-digit camera, written as 03 and 12
TRAIN_IDS, TEST_IDS = 6, 4


def write_list(root: Path, folder: str, list_name: str, pids: range, images_per_camera: int, first_frame: int) -> None:
    """Images named as MSMT17 names them, and the list file naming them as `<pid folder>/<file> <pid>`."""
    lines = []
    for pid in pids:
        for camera in CAMERAS:
            for k in range(images_per_camera):
                relative = (
                    f"{pid:04d}/{pid:04d}_{first_frame + k:03d}_{camera:02d}_0303morning_{first_frame + k:04d}_0.jpg"
                )
                (root / folder / relative).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (16, 32), (40 * pid % 256, 20 * camera, 60 * k % 256)).save(root / folder / relative)
                lines.append(f"{relative} {pid}")
    (root / list_name).write_text("\n".join(lines) + "\n")


def make_msmt17(root: Path, version: str = "V1") -> Path:
    """A tiny MSMT17 release: 6 training identities, 4 test identities, cameras 03 and 12."""
    train, test = RELEASE_FOLDERS[version]
    write_list(root, train, "list_train.txt", range(TRAIN_IDS), images_per_camera=2, first_frame=0)
    write_list(root, train, "list_val.txt", range(TRAIN_IDS), images_per_camera=1, first_frame=50)
    write_list(root, test, "list_query.txt", range(TEST_IDS), images_per_camera=1, first_frame=0)
    write_list(root, test, "list_gallery.txt", range(TEST_IDS), images_per_camera=2, first_frame=10)
    return root


@pytest.fixture(scope="module")
def msmt17_v1(tmp_path_factory) -> Path:
    """Read-only: copy it before changing it."""
    return make_msmt17(tmp_path_factory.mktemp("data") / "MSMT17_V1")


@pytest.fixture
def msmt17_copy(msmt17_v1, tmp_path) -> Path:
    return Path(shutil.copytree(msmt17_v1, tmp_path / "MSMT17_V1"))


def test_lists_give_pids_and_two_digit_cameras(msmt17_v1):
    msmt17.check_layout(msmt17_v1)
    train, query, gallery = (msmt17.read_split(msmt17_v1, split) for split in ("train", "query", "gallery"))
    assert len(train) == TRAIN_IDS * 2 * 2 and len(query) == TEST_IDS * 2 and len(gallery) == TEST_IDS * 2 * 2
    assert {s.pid for s in train} == set(range(TRAIN_IDS))
    assert {s.pid for s in query} == {s.pid for s in gallery} == set(range(TEST_IDS))
    assert {s.camid for s in train} == {s.camid for s in query} == {s.camid for s in gallery} == {3, 12}
    assert train[0].path == msmt17_v1 / "train" / "0000" / "0000_000_03_0303morning_0000_0.jpg"
    assert all(s.path.parent.parent == msmt17_v1 / "test" for s in query + gallery)
    assert not any("_050_" in s.path.name for s in train), "list_val.txt images are not trained on"


def test_v2_is_detected_from_its_folders(tmp_path):
    root = make_msmt17(tmp_path / "MSMT17_V2", version="V2")
    assert msmt17.detect_version(root) == "V2"
    train = msmt17.read_split(root, "train")
    assert len(train) == TRAIN_IDS * 4 and all(s.path.parts[-3] == "mask_train_v2" for s in train)
    assert msmt17.read_split(root, "gallery")[0].path.parts[-3] == "mask_test_v2"


def test_missing_root_names_the_key(tmp_path):
    with pytest.raises(InputError, match=f"data.root={tmp_path / 'nope'} does not exist; expected an MSMT17"):
        msmt17.check_layout(tmp_path / "nope")


def test_parent_folder_points_at_the_release(msmt17_v1):
    with pytest.raises(InputError, match=f"set data.root={msmt17_v1}; expected an MSMT17 release folder"):
        msmt17.check_layout(msmt17_v1.parent)


def test_both_releases_in_one_folder_is_an_error(msmt17_copy):
    for folder in RELEASE_FOLDERS["V2"]:
        (msmt17_copy / folder).mkdir()
    with pytest.raises(InputError, match="both MSMT17 releases"):
        msmt17.check_layout(msmt17_copy)


def test_missing_list_file_is_named(msmt17_copy):
    (msmt17_copy / "list_gallery.txt").unlink()
    with pytest.raises(InputError, match=f"list file {msmt17_copy / 'list_gallery.txt'} does not exist"):
        msmt17.check_layout(msmt17_copy)


@pytest.mark.parametrize(
    "line",
    ["0000/0000_000_03_0303morning_0000_0.jpg", "0000/0000_000_03_0303morning_0000_0.jpg zero", "0000/0000_c3.jpg 0"],
)
def test_malformed_line_is_named_by_file_and_line(msmt17_copy, line):
    path = msmt17_copy / "list_query.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:2], line, *lines[2:]]))
    with pytest.raises(InputError, match=rf"{path} line 3: expected '<pid folder>/<file name> <pid>'"):
        msmt17.read_split(msmt17_copy, "query")


def test_listed_image_that_is_missing_is_named(msmt17_copy):
    missing = msmt17_copy / "test" / "0001" / "0001_000_12_0303morning_0000_0.jpg"
    missing.unlink()
    with pytest.raises(InputError, match=rf"list_query.txt line 4 names {missing}, which does not exist"):
        msmt17.read_split(msmt17_copy, "query")


@pytest.mark.parametrize("pipeline", ["tensor", "pil"])
def test_datamodule_reads_the_layout_in_both_pipelines(msmt17_v1, tmp_path, pipeline):
    datamodule = ReIDDataModule(
        str(msmt17_v1),
        layout="msmt17",
        image_size=(32, 16),
        batch_size=4,
        eval_batch_size=64,
        num_workers=0,
        val_ids=2,
        pipeline=pipeline,
        cache_dir=str(tmp_path),
    )
    datamodule.setup()
    assert datamodule.num_classes == TRAIN_IDS - 2
    assert sorted(datamodule.train_set.labels.values()) == list(range(TRAIN_IDS - 2))
    assert len(datamodule.val_set) == 2 * 2 * 2
    batch = next(iter(datamodule.test_dataloader()))
    assert batch["image"].shape == (TEST_IDS * 2 * 3, 3, 32, 16)
    assert batch["is_query"].sum() == TEST_IDS * 2
    assert set(batch["camid"].tolist()) == {3, 12}
    assert torch.equal(
        batch["pid"][: TEST_IDS * 2], torch.tensor([s.pid for s in datamodule.test_set.samples[: TEST_IDS * 2]])
    )


def test_unknown_layout_or_synthetic_msmt17_names_the_key(msmt17_v1):
    with pytest.raises(InputError, match=r"data.layout must be one of \['market', 'msmt17'\], got 'viper'"):
        ReIDDataModule(str(msmt17_v1), layout="viper")
    with pytest.raises(InputError, match="data.synthetic generates the market layout; set data.layout=market"):
        ReIDDataModule(str(msmt17_v1), layout="msmt17", synthetic={"preset": "market_style", "seed": 0})


def test_trains_end_to_end_with_debug_fast(msmt17_v1, tmp_path):
    run_dir = tmp_path / "run"
    result = run_entry_point(
        "train.py",
        "experiment=lfm_resnet18_synthetic",
        "data=msmt17",
        f"data.root={msmt17_v1}",
        "debug=fast",
        "data.image_size=[32,16]",
        "data.batch_size=4",
        "data.val_ids=2",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/num_valid_queries"] == TEST_IDS * 2
    assert 0.0 <= metrics["test/mAP"] <= 1.0 and 0.0 <= metrics["val/mAP"] <= 1.0
    checkpoint = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["num_classes"] == TRAIN_IDS - 2
    assert checkpoint["datamodule_hyper_parameters"]["layout"] == "msmt17"


def test_wrong_folder_gives_one_line(tiny_market, tmp_path):
    result = run_entry_point(
        "train.py", "data=msmt17", f"data.root={tiny_market}", "debug=fast", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert_one_line_error(result, f"data.root={tiny_market} holds no MSMT17 image folders", "mask_train_v2/")
