"""The decoded-image cache: exact pixels, reuse, and rebuilding whatever is not a complete,
current cache file."""

import os

import pytest
import torch

from lfm.data.cache import cache_file_path, cached_images
from lfm.data.datamodule import ReIDDataModule
from lfm.data.market import load_image, read_split
from lfm.data.transforms import resize_transform
from lfm.errors import InputError

SIZE = (64, 32)


@pytest.fixture
def paths(tiny_market):
    return [sample.path for sample in read_split(tiny_market, "query")]


@pytest.fixture
def cache_path(tmp_path, tiny_market):
    return cache_file_path(tiny_market, "query", SIZE, tmp_path / "cache")


def test_cache_holds_the_resized_uint8_images_and_is_reused(paths, cache_path, capsys):
    images = cached_images(paths, SIZE, cache_path)
    assert "decoding" in capsys.readouterr().out
    assert images.shape == (len(paths), 3, *SIZE) and images.dtype == torch.uint8
    for row in (0, len(paths) // 2, len(paths) - 1):
        assert torch.equal(images[row], resize_transform(SIZE)(load_image(paths[row])))
    again = cached_images(paths, SIZE, cache_path)
    assert capsys.readouterr().out == ""
    assert torch.equal(again, images)
    assert sorted(path.name for path in cache_path.parent.iterdir()) == [cache_path.name, cache_path.name + ".lock"]


def damage_by_deleting(cache_path, paths):
    cache_path.unlink()


def damage_by_truncating(cache_path, paths):
    with open(cache_path, "r+b") as file:
        file.truncate(cache_path.stat().st_size - 100)


def damage_by_flipping_a_pixel(cache_path, paths):
    with open(cache_path, "r+b") as file:
        file.seek(-1, os.SEEK_END)
        last = file.read(1)[0]
        file.seek(-1, os.SEEK_END)
        file.write(bytes([last ^ 0xFF]))


def damage_by_overwriting_the_header(cache_path, paths):
    with open(cache_path, "r+b") as file:
        file.write(b"garbage!")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (damage_by_deleting, "no cache file yet"),
        (damage_by_truncating, "truncated"),
        (damage_by_flipping_a_pixel, "corrupt"),
        (damage_by_overwriting_the_header, "not a complete cache file"),
    ],
)
def test_a_damaged_cache_is_rebuilt_with_a_message_never_read(paths, cache_path, capsys, damage, message):
    images = cached_images(paths, SIZE, cache_path).clone()
    damage(cache_path, paths)
    capsys.readouterr()
    rebuilt = cached_images(paths, SIZE, cache_path)
    assert message in capsys.readouterr().out
    assert torch.equal(rebuilt, images)


def test_a_stale_cache_is_rebuilt_when_an_image_changes(tmp_path, tiny_market, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    originals = [sample.path for sample in read_split(tiny_market, "query")[:6]]
    paths = [folder / path.name for path in originals]
    for original, copy in zip(originals, paths):
        copy.write_bytes(original.read_bytes())
    cache_path = tmp_path / "cache" / "query.uint8"
    cached_images(paths, SIZE, cache_path)
    paths[2].write_bytes(originals[3].read_bytes())
    capsys.readouterr()
    rebuilt = cached_images(paths, SIZE, cache_path)
    assert "stale" in capsys.readouterr().out
    assert torch.equal(rebuilt[2], resize_transform(SIZE)(load_image(originals[3])))


def test_another_image_size_is_another_cache_file(paths, tmp_path, tiny_market):
    small = cached_images(paths, (32, 16), cache_file_path(tiny_market, "query", (32, 16), tmp_path))
    large = cached_images(paths, SIZE, cache_file_path(tiny_market, "query", SIZE, tmp_path))
    assert small.shape[-2:] == (32, 16) and large.shape[-2:] == SIZE


def test_the_cache_lives_beside_the_dataset_unless_a_cache_dir_is_set(tmp_path):
    root = tmp_path / "Market-1501"
    assert cache_file_path(root, "train", (256, 128)) == tmp_path / "Market-1501.cache" / "train-256x128.uint8"
    elsewhere = cache_file_path(root, "train", (256, 128), tmp_path / "caches")
    assert elsewhere.parent.parent == tmp_path / "caches" and elsewhere.parent.name.startswith("Market-1501-")


def test_an_unwritable_cache_folder_names_the_key(paths, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(InputError, match="set data.cache_dir to a writable folder"):
        cached_images(paths, SIZE, blocked / "query.uint8")


def test_a_cache_larger_than_allowed_stops_with_one_line_naming_the_key(tiny_market, tmp_path):
    datamodule = ReIDDataModule(str(tiny_market), image_size=SIZE, cache_dir=str(tmp_path), cache_max_memory=1e-6)
    with pytest.raises(InputError, match=r"data.cache_max_memory=1e-06 .*set data.pipeline=pil") as error:
        datamodule.setup("fit")
    assert "\n" not in str(error.value)
    assert not any(tmp_path.iterdir()), "nothing decoded before the check"


def test_an_unreadable_image_stops_the_build_naming_the_file(tiny_market, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    broken = folder / "0002_c1s1_000451_03.jpg"
    broken.write_bytes(read_split(tiny_market, "query")[0].path.read_bytes()[:200])
    with pytest.raises(InputError, match=str(broken)):
        cached_images([broken], SIZE, tmp_path / "cache" / "broken.uint8")
    assert [path.name for path in (tmp_path / "cache").iterdir()] == ["broken.uint8.lock"]


def resident_bytes() -> int:
    """This process's resident memory (VmRSS), mapped file pages included."""
    line = next(line for line in open("/proc/self/status") if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_a_checked_cache_takes_no_memory_until_its_images_are_used(paths, tmp_path):
    """At start-up a run checks every cache it maps (train and test), but holds only the pages it reads."""
    size, count = (512, 256), 600  # about 236 MB of pixels
    many = (paths * (count // len(paths) + 1))[:count]
    path = cache_file_path(tmp_path, "many", size, tmp_path / "cache")
    cached_images(many, size, path)
    before = resident_bytes()
    images = cached_images(many, size, path)  # read back: header, size and checksum of all pixels
    checked = resident_bytes() - before
    assert int(images.sum()) > 0  # now every page is read
    used = resident_bytes() - before
    assert checked < 40e6 < 200e6 < used, (checked, used)
