"""The dataset summary: counts found beside the published ones, warnings, the DataModule hook, the command."""

import runpy
import sys
from pathlib import Path

import pytest

from lfm.data import market, msmt17, synthetic
from lfm.data.__main__ import data_settings, main
from lfm.data.datamodule import ReIDDataModule
from lfm.data.summary import PUBLISHED_COUNTS, print_summary
from lfm.errors import InputError

MARKET1501_TABLE = """\
                                 found  published
train ids                          751        751
train images                    12,936     12,936
query images                     3,368      3,368
gallery images                  19,732     19,732
junk images (pid -1)             3,819      3,819
distractor images (pid 0000)     2,793      2,793
distractor ids (gallery only)        0
cameras                              6          6
(gallery images include the junk images, which evaluation drops)
"""
DUKEMTMC_TABLE = """\
                                 found  published
train ids                          702        702
train images                    16,522     16,522
query images                     2,228      2,228
gallery images                  17,661     17,661
junk images (pid -1)                 0          0
distractor images (pid 0000)         0
distractor ids (gallery only)      408        408
cameras                              8          8
"""


def write_file_names(root: Path, preset: str) -> Path:
    """The file tree the generator writes for `preset` (seed 0), as empty files: the summary reads names only."""
    for split in synthetic.SPLITS:
        (root / split).mkdir(parents=True)
    for shot in synthetic._plan(synthetic.SYNTHETIC_PRESETS[preset], seed=0):
        (root / shot.split / shot.file_name).touch()
    return root


@pytest.mark.parametrize(
    ("preset", "published", "table"),
    [("market1501_scale", "market1501", MARKET1501_TABLE), ("dukemtmc_scale", "dukemtmc", DUKEMTMC_TABLE)],
)
def test_scale_presets_have_the_published_counts(preset, published, table, tmp_path, capsys):
    root = write_file_names(tmp_path / preset, preset)
    print_summary(market, root, PUBLISHED_COUNTS[published])
    output = capsys.readouterr()
    title = PUBLISHED_COUNTS[published].title
    assert output.out == f"Dataset summary of {root}: {title}\n{table}"
    assert output.err == ""


def test_a_hundred_missing_gallery_images_give_one_warning(tmp_path, capsys):
    root = write_file_names(tmp_path / "Market-1501-v15.09.15", "market1501_scale")
    people = sorted(path for path in (root / "bounding_box_test").iterdir() if not path.name.startswith(("-1", "0000")))
    for path in people[:100]:
        path.unlink()
    main(["data=market1501", str(root)])
    output = capsys.readouterr()
    assert "gallery images                  19,632     19,732" in output.out
    assert output.err == (
        "warning: gallery images: 19,632 found, 100 fewer than the 19,732 published for Market-1501 "
        f"(data.root={root}); is the download or extraction complete?\n"
    )


def test_msmt17_counts_the_validation_list_as_training_and_pid_0_as_a_person(tmp_path, capsys):
    root = tmp_path / "MSMT17_V2"
    lists = {"list_train.txt": (0, 1), "list_val.txt": (0, 1), "list_query.txt": (0,), "list_gallery.txt": (0, 2)}
    for number, (list_name, pids) in enumerate(lists.items()):
        folder = root / ("mask_train_v2" if list_name in ("list_train.txt", "list_val.txt") else "mask_test_v2")
        lines = []
        for pid in pids:
            relative = f"{pid:04d}/{pid:04d}_{number:03d}_{pid + 1:02d}_0303morning_0015_0.jpg"
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).touch()
            lines.append(f"{relative} {pid}")
        (root / list_name).write_text("\n".join(lines) + "\n")
    print_summary(msmt17, root, PUBLISHED_COUNTS["msmt17"])
    output = capsys.readouterr()
    rows = {line[:29].strip(): line[29:].split() for line in output.out.splitlines()[2:-1]}
    assert rows["train ids"] == ["2", "1,041"] and rows["train images"] == ["4", "32,621"]
    assert rows["distractor images (pid 0000)"] == ["0"] and rows["distractor ids (gallery only)"] == ["1"]
    assert rows["cameras"] == ["3", "15"]
    assert "warning: train images: 4 found, 32,617 fewer than the 32,621 published for MSMT17" in output.err
    assert len(output.err.splitlines()) == 5


def test_datamodule_prints_the_summary_once_at_first_setup(tiny_market, capsys):
    datamodule = ReIDDataModule(
        str(tiny_market), image_size=(32, 16), num_workers=0, pipeline="pil", published_counts="dukemtmc"
    )
    datamodule.setup("fit")
    datamodule.setup("test")
    output = capsys.readouterr()
    assert output.out.count(f"Dataset summary of {tiny_market}: DukeMTMC-reID") == 1
    assert "warning: cameras: 6 found, 2 fewer than the 8 published for DukeMTMC-reID" in output.err
    lines = output.err.splitlines()
    assert len(lines) == 7 and all(line.startswith("warning: ") for line in lines)


def test_scaled_synthetic_data_and_unset_key_have_no_published_counts(tiny_market, capsys):
    scaled = {"preset": "market1501_scale", "seed": 0, "scale": 0.01}
    assert ReIDDataModule(str(tiny_market), synthetic=scaled, published_counts="market1501").published is None
    ReIDDataModule(str(tiny_market), image_size=(32, 16), num_workers=0, pipeline="pil").setup("test")
    assert capsys.readouterr().out == ""
    with pytest.raises(InputError, match="data.published_counts must be one of .*'market1501'.* got 'market'"):
        ReIDDataModule(str(tiny_market), published_counts="market")


def test_data_configs_name_their_published_counts():
    expected = {
        "market1501": "market1501",
        "dukemtmc": "dukemtmc",
        "msmt17": "msmt17",
        "cuhk03_np_labeled": "cuhk03_np_labeled",
        "cuhk03_np_detected": "cuhk03_np_detected",
        "synthetic_market1501": "market1501",
        "synthetic_dukemtmc": "dukemtmc",
        "synthetic_market": None,
        "synthetic_duke": None,
    }
    assert {name: data_settings(f"data={name}", None)["published_counts"] for name in expected} == expected
    assert data_settings("data=market1501", None)["root"] == str(Path.cwd() / "data" / "Market-1501-v15.09.15")


def test_command_prints_the_summary_of_a_config_without_published_counts(tiny_market, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m lfm.data", "data=synthetic_market", str(tiny_market)])
    monkeypatch.delitem(sys.modules, "lfm.data.__main__")  # run it afresh as __main__, as `python -m` does
    runpy.run_module("lfm.data", run_name="__main__")
    output = capsys.readouterr()
    assert output.out.startswith(
        f"Dataset summary of {tiny_market}: no published counts (data.published_counts is null)\n"
    )
    assert "cameras                              6\n" in output.out and output.err == ""


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["data=market"], "expected data=NAME with NAME one of ["),
        (["market1501"], "expected data=NAME with NAME one of ["),
        (["data=cifar10"], "data=cifar10 is not a re-ID data config"),
        (["data=market1501", "/no/such/folder"], "data.root=/no/such/folder does not exist"),
    ],
)
def test_command_bad_input_is_one_line_and_exit_2(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith("error: ") and message in error
    assert len(error.splitlines()) == 1
