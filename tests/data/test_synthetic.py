"""The synthetic re-ID generator: on-disk formats, splits, determinism, safe writes."""

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import TINY_SCALE
from lfm.data import synthetic
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
    "market_style": re.compile(r"([-\d]+)_c(\d)s\d_\d{6}_\d{2}\.jpg"),
    "duke_style": re.compile(r"(\d{4})_c(\d)_f\d{7}\.jpg"),
}
SPLITS = ("bounding_box_train", "query", "bounding_box_test")
MICRO = 0.03


def parse_split(root: Path, preset: str, split: str) -> list[tuple[int, int, Path]]:
    """(pid, camera, path) of every file in the split; fails on any name that breaks the format."""
    entries = []
    for path in sorted((root / split).iterdir()):
        match = NAME_PATTERNS[preset].fullmatch(path.name)
        assert match, f"{path.name} does not follow the {preset} name format"
        entries.append((int(match.group(1)), int(match.group(2)), path))
    return entries


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
    gallery_cameras = defaultdict(set)
    for pid, camera, _ in gallery:
        gallery_cameras[pid].add(camera)
    for pid, camera, path in query:
        assert gallery_cameras[pid] - {camera}, f"{path.name} has no gallery match in another camera"


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
