"""The Market-1501 / DukeMTMC-reID folder layout and file-name protocol."""

import json
import shutil

import pytest

from lfm.data.market import (
    check_layout,
    hold_out_identities,
    load_image,
    parse_reid_filename,
    read_split,
)
from lfm.errors import InputError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("0002_c1s1_000451_03.jpg", (2, 1)),
        ("1501_c6s4_001902_01.jpg", (1501, 6)),
        ("-1_c3s2_012345_00.jpg", (-1, 3)),
        ("0000_c1s1_000001_00.jpg", (0, 1)),
        ("0005_c2_f0046985.jpg", (5, 2)),
        ("7140_c8_f0152342.jpg", (7140, 8)),
    ],
)
def test_parse_reid_filename(name, expected):
    assert parse_reid_filename(name) == expected


@pytest.mark.parametrize("name", ["Thumbs.db", "person_c1.jpg", "0002-c1s1.jpg", "c1_0002.jpg"])
def test_parse_reid_filename_rejects_other_names(name):
    with pytest.raises(InputError, match="0002_c1s1_000451_03.jpg"):
        parse_reid_filename(name)


def split_counts(root):
    return json.loads((root / "synthetic.json").read_text())["counts"]


@pytest.mark.parametrize("dataset", ["tiny_market", "tiny_duke"])
def test_split_counts_match_the_generated_tree(dataset, request):
    root = request.getfixturevalue(dataset)
    counts = split_counts(root)
    train, query, gallery = (read_split(root, split) for split in ("train", "query", "gallery"))
    assert len(train) == counts["bounding_box_train"]["images"]
    assert len(query) == counts["query"]["images"]
    gallery_counts = counts["bounding_box_test"]
    assert len(gallery) == gallery_counts["images"] - gallery_counts["junk_images"]
    assert all(sample.pid != -1 for sample in gallery)
    assert sum(sample.pid == 0 for sample in gallery) == gallery_counts["distractor_images"]
    assert {s.pid for s in train}.isdisjoint({s.pid for s in query})
    assert len({s.pid for s in train}) == counts["bounding_box_train"]["identities"]


def test_junk_files_exist_on_disk_but_are_dropped(tiny_market):
    junk_files = list((tiny_market / "bounding_box_test").glob("-1_*.jpg"))
    assert junk_files
    assert all(sample.pid != -1 for sample in read_split(tiny_market, "gallery"))


def test_non_image_files_are_ignored(tiny_market, tmp_path):
    root = tmp_path / "market"
    shutil.copytree(tiny_market, root)
    (root / "query" / "Thumbs.db").write_bytes(b"\x00")
    assert len(read_split(root, "query")) == len(read_split(tiny_market, "query"))


def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(InputError, match=f"data.root={tmp_path / 'nope'} does not exist"):
        check_layout(tmp_path / "nope")


def test_missing_split_folder_is_named(tiny_market, tmp_path):
    root = tmp_path / "market"
    shutil.copytree(tiny_market, root)
    shutil.rmtree(root / "query")
    with pytest.raises(InputError, match=r"is missing query/"):
        check_layout(root)


def test_empty_split_folder_is_an_error(tmp_path):
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (tmp_path / folder).mkdir()
    check_layout(tmp_path)
    with pytest.raises(InputError, match="holds no usable images"):
        read_split(tmp_path, "query")


def test_unparsable_file_name_names_the_file(tiny_market, tmp_path):
    root = tmp_path / "market"
    shutil.copytree(tiny_market, root)
    (root / "query" / "holiday.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match="holiday.jpg"):
        read_split(root, "query")


def test_corrupt_image_names_the_file(tmp_path):
    path = tmp_path / "0001_c1s1_000001_00.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(InputError, match="cannot read image .*0001_c1s1_000001_00.jpg"):
        load_image(path)


def test_hold_out_identities_splits_by_identity(tiny_market):
    samples = read_split(tiny_market, "train")
    train, query, gallery = hold_out_identities(samples, num_ids=3, seed=0)
    held_out = {s.pid for s in query}
    assert len(held_out) == 3 and {s.pid for s in gallery} == held_out
    assert held_out.isdisjoint({s.pid for s in train})
    assert len(train) + len(query) + len(gallery) == len(samples)
    assert len({(s.pid, s.camid) for s in query}) == len(query)
    assert hold_out_identities(samples, 3, seed=0) == (train, query, gallery)
    with pytest.raises(InputError, match="data.val_ids"):
        hold_out_identities(samples, num_ids=10_000, seed=0)
