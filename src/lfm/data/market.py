"""Market-1501-style on-disk layout (Market-1501, DukeMTMC-reID, CUHK03-NP): folders, file
names, samples, images.

Layout: `bounding_box_train/` (train), `query/`, `bounding_box_test/` (gallery). File names
start with the person id and camera: Market `0002_c1s1_000451_03.jpg`, Duke
`0005_c2_f0046985.jpg`, CUHK03-NP `0001_c1_1.png` (its `labeled/` and `detected/` folders each
hold this layout). pid -1 marks junk images (dropped); pid 0 marks distractors (kept as
gallery negatives).
"""

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from lfm.errors import InputError

SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FILENAME_PATTERN = re.compile(r"^([-\d]+)_c(\d+)")
JUNK_PID = -1
DISTRACTOR_PID = 0
CUHK03_NP_SUBSETS = ("labeled", "detected")


@dataclass(frozen=True)
class ReIDSample:
    """One image of the dataset: its path, person id and camera id (as on disk, 1-based)."""

    path: Path
    pid: int
    camid: int


def parse_reid_filename(name: str) -> tuple[int, int]:
    """(pid, camid) from a Market-1501 or DukeMTMC-reID image file name."""
    match = FILENAME_PATTERN.match(name)
    if match is None:
        raise InputError(
            f"cannot parse person id and camera from file name {name!r}; expected names like "
            f"0002_c1s1_000451_03.jpg (Market-1501), 0005_c2_f0046985.jpg (DukeMTMC-reID) or 0001_c1_1.png (CUHK03-NP)"
        )
    return int(match.group(1)), int(match.group(2))


def check_layout(root: Path) -> None:
    """Raise an InputError naming what is missing unless `root` has the three split folders."""
    hint = "expected a Market-1501, DukeMTMC-reID or CUHK03-NP labeled/ or detected/ folder with " + ", ".join(
        f"{f}/" for f in SPLIT_FOLDERS.values()
    )
    if not root.is_dir():
        raise InputError(f"data.root={root} does not exist; {hint}")
    missing = [folder for folder in SPLIT_FOLDERS.values() if not (root / folder).is_dir()]
    if missing:
        subsets = [f"data.root={root / name}" for name in CUHK03_NP_SUBSETS if (root / name).is_dir()]
        fix = f"; for CUHK03-NP set {' or '.join(subsets)}" if subsets else ""
        raise InputError(f"data.root={root} is missing {', '.join(f'{f}/' for f in missing)}{fix}; {hint}")


def read_split(root: Path, split: str, keep_junk: bool = False) -> list[ReIDSample]:
    """All samples of one split (train, query or gallery), sorted by file name, junk dropped unless `keep_junk`."""
    folder = root / SPLIT_FOLDERS[split]
    paths = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    samples = []
    for path in paths:
        try:
            pid, camid = parse_reid_filename(path.name)
        except InputError as error:
            raise InputError(f"{path}: {error}") from None
        if keep_junk or pid != JUNK_PID:
            samples.append(ReIDSample(path, pid, camid))
    if not samples:
        raise InputError(
            f"{folder} holds no usable images (key data.root); expected files like 0002_c1s1_000451_03.jpg"
        )
    return samples


def read_published_splits(root: Path) -> dict[str, list[ReIDSample]]:
    """Every split as published, junk included (what the dataset summary counts)."""
    return {split: read_split(root, split, keep_junk=True) for split in SPLIT_FOLDERS}


def load_image(path: Path) -> Image.Image:
    """Decode an image as RGB, with an error naming the file when it is unreadable."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise InputError(f"cannot read image {path} ({error}); replace or delete the file") from None


def check_images(samples: list[ReIDSample]) -> None:
    """Read every image's header, so that a file that is not an image stops the run at the
    start rather than hours later (a truncated image is still only found when decoded)."""
    for sample in samples:
        try:
            Image.open(sample.path).close()
        except (OSError, UnidentifiedImageError) as error:
            raise InputError(f"cannot read image {sample.path} ({error}); replace or delete the file") from None


class ReIDImageDataset(Dataset):
    """Samples as dicts: image, label (training class, -1 if none), pid, camid, is_query, index."""

    def __init__(self, samples: list[ReIDSample], transform, labels: dict[int, int] | None = None, num_query: int = 0):
        self.samples = samples
        self.transform = transform
        self.labels = labels or {}
        self.num_query = num_query

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        return {
            "image": self.transform(load_image(sample.path)),
            "label": self.labels.get(sample.pid, -1),
            "pid": sample.pid,
            "camid": sample.camid,
            "is_query": index < self.num_query,
            "index": index,
        }


def ranking_dataset(query: list[ReIDSample], gallery: list[ReIDSample], transform) -> ReIDImageDataset:
    """Query samples first, then gallery samples, flagged by `is_query`."""
    return ReIDImageDataset(query + gallery, transform, num_query=len(query))


def hold_out_identities(
    samples: list[ReIDSample], num_ids: int, seed: int
) -> tuple[list[ReIDSample], list[ReIDSample], list[ReIDSample]]:
    """Split `num_ids` random identities off the training samples as a validation set.

    Returns (train, val_query, val_gallery): the first image of each (pid, camera) of a
    held-out identity is a query, the rest are gallery.
    """
    pids = sorted({sample.pid for sample in samples})
    if not 0 <= num_ids < len(pids):
        raise InputError(f"data.val_ids must be in [0, {len(pids) - 1}] for this dataset, got {num_ids}")
    order = torch.randperm(len(pids), generator=torch.Generator().manual_seed(seed)).tolist()
    held_out = {pids[i] for i in order[:num_ids]}
    train = [sample for sample in samples if sample.pid not in held_out]
    query, gallery, seen = [], [], set()
    for sample in samples:
        if sample.pid in held_out:
            key = (sample.pid, sample.camid)
            (gallery if key in seen else query).append(sample)
            seen.add(key)
    return train, query, gallery
