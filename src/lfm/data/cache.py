"""The decoded-image cache: a split's images, decoded and resized once, as one uint8 file.

A cache file holds a 4 KiB header (magic, JSON with the cache key, shape and a CRC-32 of
the pixels) followed by the images as uint8 [N, 3, H, W], exactly the PIL pipeline's
evaluation input before the conversion to float. The key covers the file list with each
file's size and modification time, the image size and the resize settings, so a cache of
other images or settings is never read. Files are written to a temporary name and renamed
when complete; a file lock makes concurrent processes (DDP ranks, sweep runs) build it once.
Readers memory-map it copy-on-write, so processes on one machine share its pages.
"""

import fcntl
import hashlib
import json
import math
import os
import time
import uuid
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Dataset

from lfm.data.market import load_image
from lfm.data.transforms import RESIZE, resize_transform
from lfm.errors import InputError

FORMAT_VERSION = 1
MAGIC = b"LFMIMGS\x01"
HEADER_BYTES = 4096
CHECKSUM_CHUNK = 64 << 20


def cache_key(image_paths: Sequence[Path], image_size: Sequence[int]) -> str:
    """SHA-256 of what the cached pixels depend on: the files (path, size, mtime), size, resize."""
    files = []
    for path in image_paths:
        stat = path.stat()
        files.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    description = {
        "format_version": FORMAT_VERSION,
        "image_size": list(image_size),
        "resize": {"interpolation": RESIZE["interpolation"].value, "antialias": RESIZE["antialias"]},
        "files": files,
    }
    return hashlib.sha256(json.dumps(description).encode()).hexdigest()


def cache_file_path(root: Path, name: str, image_size: Sequence[int], cache_dir: Path | None = None) -> Path:
    """Where the cache of `root`'s `name` split lives: beside the dataset (`<root>.cache/`), or
    in a folder per dataset under `cache_dir`."""
    root = root.resolve()
    if cache_dir is None:
        folder = root.parent / f"{root.name}.cache"
    else:
        folder = cache_dir / f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"
    return folder / f"{name}-{image_size[0]}x{image_size[1]}.uint8"


def cache_bytes(num_images: int, image_size: Sequence[int]) -> int:
    return num_images * 3 * image_size[0] * image_size[1]


def check_cache_memory(num_bytes: int, max_fraction: float, device: torch.device) -> None:
    """Refuse a cache larger than `max_fraction` of RAM (or of the GPU's memory when it lives there)."""
    if device.type == "cuda":
        total, where = torch.cuda.get_device_properties(device).total_memory, f"the memory of {device}"
    else:
        total, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "RAM"
    if num_bytes > max_fraction * total:
        raise InputError(
            f"the decoded-image cache needs {num_bytes / 2**30:.1f} GiB, more than data.cache_max_memory={max_fraction} "
            f"of {where} ({total / 2**30:.1f} GiB); set data.pipeline=pil to decode images per batch instead, "
            f"or raise data.cache_max_memory"
        )


def cached_images(
    image_paths: Sequence[Path], image_size: Sequence[int], path: Path, num_workers: int = 0
) -> torch.Tensor:
    """The images of `image_paths` as uint8 [N, 3, H, W], read from the cache file at `path`,
    which is (re)built first unless it is complete and holds exactly these images."""
    key = cache_key(image_paths, image_size)
    shape = (len(image_paths), 3, *image_size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "w")
    except OSError as error:
        raise InputError(
            f"cannot write the image cache in {path.parent} ({error.strerror}); set data.cache_dir to a writable folder"
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        images, problem = read_cache(path, key, shape)
        if images is None:
            print(f"Image cache {path}: {problem}; decoding {len(image_paths)} images once", flush=True)
            write_cache(path, key, image_paths, image_size, num_workers)
            # the pixels were checksummed as they were written: read back the header and size only
            images, problem = read_cache(path, key, shape, check_pixels=False)
            if images is None:
                raise InputError(f"the image cache {path} just written cannot be read back ({problem}); check the disk")
    return images


def read_cache(
    path: Path, key: str, shape: tuple[int, ...], check_pixels: bool = True
) -> tuple[torch.Tensor | None, str | None]:
    """(images, None) if `path` is a complete, intact cache of `key`, else (None, what is wrong).

    The pixels are checked by reading the file, not through the returned memory map, so a checked
    cache takes no memory in this process until its images are used."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            head = file.read(HEADER_BYTES)
    except FileNotFoundError:
        return None, "no cache file yet"
    if len(head) < HEADER_BYTES or not head.startswith(MAGIC):
        return None, "not a complete cache file (truncated or foreign)"
    try:
        length = int.from_bytes(head[len(MAGIC) : len(MAGIC) + 8], "little")
        header = json.loads(head[len(MAGIC) + 8 : len(MAGIC) + 8 + length])
        recorded_key, recorded_shape, checksum = header["key"], tuple(header["shape"]), header["crc32"]
    except (ValueError, KeyError, TypeError):
        return None, "its header is corrupt"
    if recorded_key != key or recorded_shape != shape:
        return None, "stale (the image files, the image size or the resize settings changed)"
    expected = HEADER_BYTES + math.prod(shape)
    if size != expected:
        return None, f"truncated or padded ({size} bytes, expected {expected})"
    if check_pixels and _file_crc32(path, HEADER_BYTES) != checksum:
        return None, "corrupt (its checksum does not match)"
    return torch.from_numpy(np.memmap(path, dtype=np.uint8, mode="c", offset=HEADER_BYTES, shape=shape)), None


def write_cache(path: Path, key: str, image_paths: Sequence[Path], image_size: Sequence[int], num_workers: int) -> None:
    """Decode and resize every image into a temporary file, then rename it to `path`."""
    shape = (len(image_paths), 3, *image_size)
    partial = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex}")
    start = time.perf_counter()
    try:
        with open(partial, "wb") as file:
            file.write(bytes(HEADER_BYTES))  # the header's place: written last, once the checksum is known
            checksum = 0
            # Its own generator: building a cache must not move the global random state (model init).
            loader = DataLoader(
                _ResizedImages(image_paths, image_size),
                batch_size=64,
                num_workers=num_workers,
                generator=torch.Generator(),
            )
            with _progress() as progress:
                task = progress.add_task(f"decoding {path.name}", total=len(image_paths))
                # appended in order: a plain write costs a tenth of filling a fresh memory map page by page
                for batch in loader:
                    block = batch.numpy()
                    file.write(block)
                    checksum = zlib.crc32(block, checksum)
                    progress.advance(task, len(block))
            header = json.dumps(
                {"key": key, "shape": list(shape), "crc32": checksum, "format_version": FORMAT_VERSION}
            ).encode()
            # no fsync: a file torn by a crash fails its checksum when read, and is rebuilt
            file.seek(0)
            file.write(MAGIC + len(header).to_bytes(8, "little") + header)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    print(f"Image cache {path}: {len(image_paths)} images in {time.perf_counter() - start:.1f} s", flush=True)


class _ResizedImages(Dataset):
    def __init__(self, image_paths: Sequence[Path], image_size: Sequence[int]):
        self.image_paths, self.transform = list(image_paths), resize_transform(image_size)

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_image(self.image_paths[index])).as_subclass(torch.Tensor)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def _file_crc32(path: Path, offset: int) -> int:
    """The CRC-32 of the file's bytes from `offset` on, read in chunks into one buffer."""
    checksum, buffer = 0, bytearray(CHECKSUM_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        file.seek(offset)
        while count := file.readinto(buffer):
            checksum = zlib.crc32(view[:count], checksum)
    return checksum
