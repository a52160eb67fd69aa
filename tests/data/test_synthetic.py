"""The synthetic re-ID generator: on-disk formats, splits, determinism, safe writes."""

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import PROJECT_ROOT, TINY_SCALE
from PIL import Image

from lfm.data import synthetic
from lfm.data.market import read_split
from lfm.data.synthetic import (
    SYNTHETIC_PRESETS,
    SyntheticPreset,
    ensure_synthetic_reid,
    generate_synthetic_reid,
    main,
    resolve_synthetic_preset,
)
from lfm.errors import InputError

NAME_PATTERNS = {
    "market": re.compile(r"([-\d]+)_c(\d)s\d_\d{6}_\d{2}\.jpg"),
    "duke": re.compile(r"(\d{4})_c(\d)_f\d{7}\.jpg"),
}
SPLITS = ("bounding_box_train", "query", "bounding_box_test")
MICRO = 0.03
EXACT_TOTALS = ("num_train_images", "num_query_images", "num_gallery_images")
# The real datasets as our reader sees them: (images, ids with pid > 0, cameras) per split, junk dropped.
REAL_COUNTS = {
    "market1501_scale": {
        "train": (12936, 751, 6),
        "query": (3368, 750, 6),
        "gallery": (15913, 750, 6),
        "distractor_images": 2793,
        "junk_images": 3819,
    },
    "dukemtmc_scale": {
        "train": (16522, 702, 8),
        "query": (2228, 702, 8),
        "gallery": (17661, 1110, 8),
        "distractor_images": 0,
        "junk_images": 0,
    },
}


def parse_split(root: Path, preset: str, split: str) -> list[tuple[int, int, Path]]:
    """(pid, camera, path) of every file in the split; fails on any name that breaks the format."""
    entries = []
    for path in sorted((root / split).iterdir()):
        match = NAME_PATTERNS[SYNTHETIC_PRESETS[preset].name_style].fullmatch(path.name)
        assert match, f"{path.name} does not follow the {preset} name format"
        entries.append((int(match.group(1)), int(match.group(2)), path))
    return entries


def queries_without_cross_camera_match(query, gallery) -> list:
    """The (pid, camera, ...) query entries that have no gallery image of their pid in another camera."""
    gallery_cameras = defaultdict(set)
    for pid, camera, *_ in gallery:
        gallery_cameras[pid].add(camera)
    return [entry for entry in query if not gallery_cameras[entry[0]] - {entry[1]}]


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(params=["market_style", "duke_style"])
def dataset(request) -> tuple[str, Path]:
    name = request.param
    return name, request.getfixturevalue("tiny_market" if name == "market_style" else "tiny_duke")


def test_layout_names_and_cameras(dataset):
    name, root = dataset
    assert sorted(path.name for path in root.iterdir()) == sorted([*SPLITS, "synthetic.json"])
    marker = json.loads((root / "synthetic.json").read_text())
    cameras = set()
    for split in SPLITS:
        entries = parse_split(root, name, split)
        assert len(entries) == marker["counts"][split]["images"] > 0
        cameras |= {camera for _, camera, _ in entries}
    assert cameras == set(range(1, SYNTHETIC_PRESETS[name].num_cameras + 1))
    assert marker["seed"] == 0 and marker["preset"]["name"] == name


def test_train_and_test_ids_are_disjoint_and_queries_match_in_another_camera(dataset):
    name, root = dataset
    train, query, gallery = (parse_split(root, name, split) for split in SPLITS)
    train_ids = {pid for pid, _, _ in train}
    assert train_ids.isdisjoint(pid for pid, _, _ in query + gallery)
    assert {pid for pid, _, _ in query} <= {pid for pid, _, _ in gallery}
    assert queries_without_cross_camera_match(query, gallery) == []


def test_market_style_gallery_holds_junk_and_distractors(tiny_market):
    gallery = parse_split(tiny_market, "market_style", "bounding_box_test")
    preset = SYNTHETIC_PRESETS["market_style"].scaled(TINY_SCALE)
    junk = [path.name for pid, _, path in gallery if pid == -1]
    assert len(junk) == preset.num_junk_images > 0
    assert all(name.startswith("-1_c") for name in junk)
    assert sum(pid == 0 for pid, _, _ in gallery) == preset.num_distractor_images > 0
    for split in ("bounding_box_train", "query"):
        assert all(pid > 0 for pid, _, _ in parse_split(tiny_market, "market_style", split))


def test_duke_style_has_no_junk_and_gallery_only_distractor_ids(tiny_duke):
    train, query, gallery = (parse_split(tiny_duke, "duke_style", split) for split in SPLITS)
    assert all(pid > 0 for pid, _, _ in train + query + gallery)
    gallery_only = {pid for pid, _, _ in gallery} - {pid for pid, _, _ in query}
    assert len(gallery_only) == SYNTHETIC_PRESETS["duke_style"].scaled(TINY_SCALE).num_distractor_ids > 0


def test_images_are_128x64_rgb_and_differ_across_cameras(tiny_market):
    by_camera = defaultdict(dict)
    for pid, camera, path in parse_split(tiny_market, "market_style", "bounding_box_train"):
        image = Image.open(path)
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 128))
        by_camera[pid].setdefault(camera, np.asarray(image, dtype=np.float32))
    pid, views = next((pid, views) for pid, views in by_camera.items() if len(views) >= 2)
    first, second = list(views.values())[:2]
    assert np.abs(first - second).mean() > 10.0


def test_same_seed_is_byte_identical_and_another_seed_differs(tiny_market, tmp_path):
    again = generate_synthetic_reid(tmp_path / "again", SYNTHETIC_PRESETS["market_style"].scaled(TINY_SCALE), seed=0)
    assert file_bytes(again) == file_bytes(tiny_market)
    micro = SYNTHETIC_PRESETS["market_style"].scaled(MICRO)
    seed_1, seed_2 = (file_bytes(generate_synthetic_reid(tmp_path / f"s{s}", micro, seed=s)) for s in (1, 2))
    images_1, images_2 = ({data for name, data in files.items() if name.endswith(".jpg")} for files in (seed_1, seed_2))
    assert images_1 and images_1.isdisjoint(images_2)


def test_foreign_folder_is_refused_and_left_alone(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("my work")
    with pytest.raises(FileExistsError, match=re.escape(str(root))):
        generate_synthetic_reid(root, SYNTHETIC_PRESETS["market_style"].scaled(MICRO))
    assert [path.name for path in root.iterdir()] == ["notes.txt"]
    assert not list(tmp_path.glob(".mine.partial-*"))


def test_dataset_of_another_seed_or_preset_is_refused(tmp_path):
    micro = SYNTHETIC_PRESETS["market_style"].scaled(MICRO)
    root = generate_synthetic_reid(tmp_path / "data", micro, seed=1)
    with pytest.raises(FileExistsError, match="seed 1"):
        ensure_synthetic_reid(root, micro, seed=2)
    with pytest.raises(FileExistsError, match=re.escape(str(root))):
        generate_synthetic_reid(root, micro.scaled(2.0), seed=1)


def test_complete_dataset_is_returned_without_rewriting(tmp_path):
    micro = SYNTHETIC_PRESETS["duke_style"].scaled(MICRO)
    root = generate_synthetic_reid(tmp_path / "data", micro, seed=0)
    before = {path: path.stat().st_mtime_ns for path in root.rglob("*")}
    assert generate_synthetic_reid(root, micro, seed=0) == root
    assert ensure_synthetic_reid(str(root), micro, seed=0) == root
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*")} == before


def test_empty_folder_is_filled(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    ensure_synthetic_reid(root, SYNTHETIC_PRESETS["market_style"].scaled(MICRO))
    assert (root / "synthetic.json").is_file()


def test_ensure_reports_missing_images(tmp_path):
    micro = SYNTHETIC_PRESETS["market_style"].scaled(MICRO)
    root = generate_synthetic_reid(tmp_path / "data", micro)
    next((root / "query").iterdir()).unlink()
    with pytest.raises(InputError, match=re.escape(str(root / "query"))):
        ensure_synthetic_reid(root, micro)


def test_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing_render(*args):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return render(*args)

    render = synthetic._render
    monkeypatch.setattr(synthetic, "_render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_reid(tmp_path / "data", SYNTHETIC_PRESETS["market_style"].scaled(MICRO))
    assert list(tmp_path.iterdir()) == []


def test_presets_are_resolved_and_validated():
    assert resolve_synthetic_preset("duke_style") is SYNTHETIC_PRESETS["duke_style"]
    with pytest.raises(InputError, match="market_style"):
        resolve_synthetic_preset("msmt_style")
    with pytest.raises(InputError, match="num_junk_images"):
        SyntheticPreset(**{**vars(SYNTHETIC_PRESETS["duke_style"]), "num_junk_images": 3})
    with pytest.raises(InputError, match="cameras_per_id"):
        SyntheticPreset(**{**vars(SYNTHETIC_PRESETS["market_style"]), "cameras_per_id": (1, 3)})


def test_scaled_keeps_every_kind_of_image():
    micro = SYNTHETIC_PRESETS["market_style"].scaled(0.001)
    assert (micro.num_train_ids, micro.num_test_ids, micro.num_distractor_images, micro.num_junk_images) == (1, 1, 1, 1)
    assert micro.num_distractor_ids == 0


@pytest.mark.parametrize("name", REAL_COUNTS)
def test_scale_presets_plan_the_real_datasets_counts(name):
    preset = SYNTHETIC_PRESETS[name]
    shots = synthetic._plan(preset, seed=0)
    read = {
        split: [(shot.pid, shot.camera) for shot in shots if shot.split == folder and shot.pid != -1]
        for split, folder in zip(("train", "query", "gallery"), SPLITS)
    }
    counts = {
        split: (len(entries), len({pid for pid, _ in entries if pid > 0}), len({camera for _, camera in entries}))
        for split, entries in read.items()
    }
    counts["distractor_images"] = sum(pid == 0 for pid, _ in read["gallery"])
    counts["junk_images"] = sum(shot.pid == -1 for shot in shots)
    assert counts == REAL_COUNTS[name]
    assert (preset.height, preset.width, preset.num_cameras) == (128, 64, counts["train"][2])
    assert queries_without_cross_camera_match(read["query"], read["gallery"]) == []
    assert {pid for pid, _ in read["train"]}.isdisjoint(pid for pid, _ in read["gallery"])


@pytest.mark.parametrize("name", REAL_COUNTS)
def test_scaled_scale_preset_is_read_with_its_exact_counts(name, tmp_path):
    preset = SYNTHETIC_PRESETS[name].scaled(0.01)
    root = generate_synthetic_reid(tmp_path / name, preset, seed=0)
    train, query, gallery = (read_split(root, split) for split in ("train", "query", "gallery"))
    ids = [{sample.pid for sample in samples if sample.pid > 0} for samples in (train, query, gallery)]
    assert [len(train), len(query), len(gallery)] == [
        preset.num_train_images,
        preset.num_query_images,
        preset.num_gallery_images,
    ]
    assert [len(found) for found in ids] == [
        preset.num_train_ids,
        preset.num_test_ids,
        preset.num_test_ids + preset.num_distractor_ids,
    ]
    assert sum(sample.pid == 0 for sample in gallery) == preset.num_distractor_images
    assert len(list((root / "bounding_box_test").glob("-1_*.jpg"))) == preset.num_junk_images
    entries = [[(sample.pid, sample.camid) for sample in samples] for samples in (query, gallery)]
    assert queries_without_cross_camera_match(*entries) == []
    for split in SPLITS:
        parse_split(root, name, split)  # asserts that every file name follows the layout
    assert Image.open(train[0].path).size == (64, 128)
    assert json.loads((root / "synthetic.json").read_text())["preset"]["num_query_images"] == preset.num_query_images


def test_scaled_scales_exact_totals_but_keeps_them_feasible():
    market = SYNTHETIC_PRESETS["market1501_scale"]
    half = market.scaled(0.5)
    assert [getattr(half, key) for key in EXACT_TOTALS] == [6468, 1684, 7956]
    smallest = market.scaled(0.0001)
    assert [getattr(smallest, key) for key in EXACT_TOTALS] == list(smallest.minimum_totals().values())
    assert all(getattr(SYNTHETIC_PRESETS["market_style"].scaled(0.5), key) is None for key in EXACT_TOTALS)


def test_exact_totals_are_validated():
    fields = vars(SYNTHETIC_PRESETS["market1501_scale"])
    with pytest.raises(InputError, match="set all three or none"):
        SyntheticPreset(**{**fields, "num_query_images": None})
    with pytest.raises(InputError, match="num_gallery_images=11000: need at least 11793"):
        SyntheticPreset(**{**fields, "num_gallery_images": 11000})


def test_presets_without_exact_totals_keep_their_marker(tiny_market):
    """Datasets generated before exact totals existed must still be recognised as complete."""
    marker = json.loads((tiny_market / "synthetic.json").read_text())
    assert set(EXACT_TOTALS).isdisjoint(marker["preset"])


@pytest.mark.parametrize(
    ("config", "name"), [("synthetic_market1501", "market1501_scale"), ("synthetic_dukemtmc", "dukemtmc_scale")]
)
def test_scale_configs_select_the_scale_presets(config, name):
    data = yaml.safe_load((PROJECT_ROOT / "conf" / "data" / f"{config}.yaml").read_text())
    assert data["synthetic"]["preset"] == name and name in SYNTHETIC_PRESETS


def test_command_line_prints_a_summary(tmp_path, capsys):
    main(["--root", str(tmp_path / "cli"), "--preset", "duke_style", "--seed", "4", "--scale", str(MICRO)])
    output = capsys.readouterr().out
    marker = json.loads((tmp_path / "cli" / "synthetic.json").read_text())
    assert marker["seed"] == 4 and marker["preset"]["name"] == "duke_style"
    for split in SPLITS:
        assert re.search(rf"{split}\s+{marker['counts'][split]['images']} images", output)


def test_command_line_refuses_a_foreign_folder_in_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("my work")
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(tmp_path), "--scale", str(MICRO)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path} is not empty")
