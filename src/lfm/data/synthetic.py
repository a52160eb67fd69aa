"""Deterministic synthetic person re-ID datasets in the Market-1501 and DukeMTMC-reID formats.

Every image is drawn from three random streams seeded from (seed, preset name, ...): the
identity's own stream (clothing, body, accessories), the camera's stream (scene, colour
cast, blur, noise) and the image's stream (view, pose, lighting, occlusion). A file's
bytes therefore never depend on generation order.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import math
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from lfm.errors import InputError

FORMAT_VERSION = 1
MARKER_NAME = "synthetic.json"
TRAIN_SPLIT, QUERY_SPLIT, GALLERY_SPLIT = "bounding_box_train", "query", "bounding_box_test"
SPLITS = (TRAIN_SPLIT, QUERY_SPLIT, GALLERY_SPLIT)
JUNK_PID, DISTRACTOR_PID = -1, 0

RGB = tuple[int, int, int]
Colour = np.ndarray | Callable[[np.ndarray, np.ndarray], np.ndarray]

_PLAN_STREAM, _IDENTITY_STREAM, _CAMERA_STREAM, _IMAGE_STREAM = range(4)
_PERSON, _DISTRACTOR, _JUNK = range(3)
_EXACT_TOTALS = ("num_train_images", "num_query_images", "num_gallery_images")
_PATTERNS = ("horizontal_stripes", "vertical_stripes", "checks", "two_tone")
_LOWER_KINDS = ("trousers", "trousers", "shorts", "skirt")
_VIEWS = ("front", "back", "side")
_SKIN_TONES = ((241, 194, 167), (224, 172, 138), (198, 134, 96), (161, 102, 68), (110, 70, 48))
_HAIR_COLOURS = ((25, 20, 18), (60, 40, 28), (110, 78, 48), (170, 140, 90), (130, 130, 130))
_SHOE_COLOURS = ((20, 20, 22), (235, 235, 235), (90, 60, 40), (60, 60, 70))


@dataclass(frozen=True)
class SyntheticPreset:
    """Everything that defines a synthetic dataset; ranges are inclusive (low, high) pairs.

    Counts: identities are seen by `cameras_per_id` cameras with `images_per_camera` images
    each. A test identity puts `queries_per_camera` images of a camera into `query/` with
    probability `query_camera_probability` per camera (at least one camera, and every
    camera keeps a gallery image). The gallery also holds `num_distractor_images` images
    with pid 0000, every image of `num_distractor_ids` gallery-only identities and
    `num_junk_images` junk images with pid -1.

    Exact totals (all three or none): `num_train_images`, `num_query_images` and
    `num_gallery_images` (the gallery as read, junk excluded: test ids, distractor ids and
    pid 0000). When set, identities still draw their cameras from `cameras_per_id`, but
    image counts replace the draws from `images_per_camera`, `query_camera_probability` and
    `queries_per_camera`: every (identity, camera) pair gets `images_per_camera[0]` train or
    gallery images, every test identity a query in one of its cameras, and the rest of each
    total is spread uniformly at random over the pairs.

    Difficulty: clothing colours come from small palettes with `clothing_jitter` (RGB std)
    per identity; `pattern_probability` and `accessory_probability` control how many
    identities carry a distinguishing pattern or accessory. Each camera draws a base gain
    from `illumination`, a gamma from `gamma`, per-channel gains within 1 +- `colour_cast`,
    a Gaussian blur radius from `blur_radius` and a (uniform) noise std from `noise_std`; each image
    varies them by `illumination_jitter` and `colour_cast_jitter`, and may be occluded with
    `occlusion_probability`.
    """

    name: str
    name_style: Literal["market", "duke"]
    num_cameras: int
    num_train_ids: int
    num_test_ids: int
    cameras_per_id: tuple[int, int]
    images_per_camera: tuple[int, int]
    query_camera_probability: float
    queries_per_camera: tuple[int, int]
    num_distractor_images: int
    num_distractor_ids: int
    num_junk_images: int
    upper_palette: tuple[RGB, ...]
    lower_palette: tuple[RGB, ...]
    clothing_jitter: float
    pattern_probability: float
    accessory_probability: float
    background_palette: tuple[RGB, ...]
    floor_palette: tuple[RGB, ...]
    background_jitter: float
    texture_strength: float
    clutter_objects: tuple[int, int]
    illumination: tuple[float, float]
    illumination_jitter: float
    gamma: tuple[float, float]
    colour_cast: float
    colour_cast_jitter: float
    blur_radius: tuple[float, float]
    noise_std: tuple[float, float]
    occlusion_probability: float
    person_height: tuple[float, float] = (0.75, 0.95)
    horizontal_jitter: float = 0.1
    height: int = 128
    width: int = 64
    jpeg_quality: int = 95
    num_train_images: int | None = None
    num_query_images: int | None = None
    num_gallery_images: int | None = None

    def __post_init__(self) -> None:
        if self.name_style not in ("market", "duke"):
            raise InputError(f"SyntheticPreset.name_style={self.name_style!r}: use 'market' or 'duke'")
        if not 2 <= self.num_cameras <= 9:
            raise InputError(
                f"SyntheticPreset.num_cameras={self.num_cameras}: file names hold one camera digit, use 2..9"
            )
        total_ids = self.num_train_ids + self.num_test_ids + self.num_distractor_ids
        if min(self.num_train_ids, self.num_test_ids) < 1 or total_ids > 4999:
            raise InputError(
                f"SyntheticPreset: num_train_ids={self.num_train_ids}, num_test_ids={self.num_test_ids}, "
                f"num_distractor_ids={self.num_distractor_ids}: need at least one train and one test id and "
                "at most 4999 ids in all (4-digit pids)"
            )
        if self.name_style == "duke" and self.num_junk_images:
            raise InputError("SyntheticPreset.num_junk_images: DukeMTMC-reID names have no junk pid -1; set it to 0")
        for key in (
            "cameras_per_id",
            "images_per_camera",
            "queries_per_camera",
            "clutter_objects",
            "person_height",
            "illumination",
            "gamma",
            "blur_radius",
            "noise_std",
        ):
            low, high = getattr(self, key)
            if not 0 <= low <= high:
                raise InputError(f"SyntheticPreset.{key}={(low, high)}: need 0 <= low <= high")
        if not 2 <= self.cameras_per_id[0] <= self.cameras_per_id[1] <= self.num_cameras:
            raise InputError(
                f"SyntheticPreset.cameras_per_id={self.cameras_per_id}: need 2 <= low <= high <= num_cameras "
                "so that every query has a gallery match in another camera"
            )
        if self.images_per_camera[0] < 2 or self.queries_per_camera[0] < 1:
            raise InputError(
                f"SyntheticPreset: images_per_camera={self.images_per_camera} needs low >= 2 and "
                f"queries_per_camera={self.queries_per_camera} needs low >= 1"
            )
        for key in (
            "query_camera_probability",
            "pattern_probability",
            "accessory_probability",
            "occlusion_probability",
        ):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise InputError(f"SyntheticPreset.{key}={getattr(self, key)}: a probability must lie in [0, 1]")
        for key in ("num_distractor_images", "num_distractor_ids", "num_junk_images"):
            if getattr(self, key) < 0:
                raise InputError(f"SyntheticPreset.{key}={getattr(self, key)}: use a count >= 0")
        if not (self.upper_palette and self.lower_palette and self.background_palette and self.floor_palette):
            raise InputError("SyntheticPreset: the colour palettes must not be empty")
        totals = {key: getattr(self, key) for key in _EXACT_TOTALS}
        if None in totals.values() and set(totals.values()) != {None}:
            raise InputError(f"SyntheticPreset: exact totals {totals}: set all three or none")
        if self.has_exact_totals:
            for key, minimum in self.minimum_totals().items():
                if totals[key] < minimum:
                    raise InputError(
                        f"SyntheticPreset.{key}={totals[key]}: need at least {minimum} for these identity counts, "
                        "cameras_per_id and images_per_camera"
                    )

    @property
    def has_exact_totals(self) -> bool:
        return self.num_train_images is not None

    def minimum_totals(self) -> dict[str, int]:
        """The smallest exact totals that these identity counts allow, even if every identity has the most cameras."""
        most_images = self.cameras_per_id[1] * self.images_per_camera[0]
        return {
            "num_train_images": self.num_train_ids * most_images,
            "num_query_images": self.num_test_ids,
            "num_gallery_images": (self.num_test_ids + self.num_distractor_ids) * most_images
            + self.num_distractor_images,
        }

    def scaled(self, fraction: float) -> SyntheticPreset:
        """The same preset with identity, distractor, junk counts and exact totals scaled.

        Non-zero counts stay >= 1, and exact totals stay at or above the scaled identities' minimum.
        """

        def scale(count: int) -> int:
            return max(1, round(count * fraction)) if count else 0

        counts = {
            key: scale(getattr(self, key))
            for key in (
                "num_train_ids",
                "num_test_ids",
                "num_distractor_images",
                "num_distractor_ids",
                "num_junk_images",
            )
        }
        without_totals = dataclasses.replace(self, **counts, **dict.fromkeys(_EXACT_TOTALS))
        if not self.has_exact_totals:
            return without_totals
        minimums = without_totals.minimum_totals()
        return dataclasses.replace(
            without_totals, **{key: max(scale(getattr(self, key)), minimums[key]) for key in _EXACT_TOTALS}
        )


_MARKET_UPPER = (
    (235, 235, 230),
    (30, 30, 35),
    (190, 40, 45),
    (40, 70, 160),
    (130, 130, 135),
    (60, 130, 70),
    (225, 200, 60),
    (215, 140, 170),
)
_MARKET_LOWER = ((30, 30, 35), (40, 55, 110), (130, 130, 135), (225, 220, 210), (150, 120, 85), (70, 90, 60))
_DUKE_UPPER = (
    (25, 25, 30),
    (25, 25, 30),
    (45, 50, 75),
    (110, 110, 115),
    (150, 40, 45),
    (235, 235, 235),
    (70, 80, 55),
    (105, 75, 55),
)
_DUKE_LOWER = ((25, 25, 30), (25, 25, 30), (45, 55, 95), (110, 110, 115), (80, 65, 50), (200, 195, 185))

SYNTHETIC_PRESETS: dict[str, SyntheticPreset] = {
    "market_style": SyntheticPreset(
        name="market_style",
        name_style="market",
        num_cameras=6,
        num_train_ids=150,
        num_test_ids=150,
        cameras_per_id=(2, 6),
        images_per_camera=(2, 5),
        query_camera_probability=0.5,
        queries_per_camera=(1, 2),
        num_distractor_images=100,
        num_distractor_ids=0,
        num_junk_images=60,
        upper_palette=_MARKET_UPPER,
        lower_palette=_MARKET_LOWER,
        clothing_jitter=12.0,
        pattern_probability=0.4,
        accessory_probability=0.25,
        background_palette=((200, 195, 180), (150, 160, 150), (120, 150, 110), (185, 175, 160), (160, 170, 185)),
        floor_palette=((175, 170, 160), (140, 135, 125), (190, 180, 150)),
        background_jitter=25.0,
        texture_strength=10.0,
        clutter_objects=(1, 4),
        illumination=(0.75, 1.2),
        illumination_jitter=0.12,
        gamma=(0.8, 1.25),
        colour_cast=0.1,
        colour_cast_jitter=0.04,
        blur_radius=(0.0, 1.0),
        noise_std=(2.0, 7.0),
        occlusion_probability=0.2,
    ),
}
# Duke-style: the same identity and camera draws as market_style, in DukeMTMC-reID's names and
# look (eight cameras, distractor identities instead of distractor images and junk, darker scenes).
SYNTHETIC_PRESETS["duke_style"] = dataclasses.replace(
    SYNTHETIC_PRESETS["market_style"],
    name="duke_style",
    name_style="duke",
    num_cameras=8,
    num_distractor_images=0,
    num_distractor_ids=60,
    num_junk_images=0,
    upper_palette=_DUKE_UPPER,
    lower_palette=_DUKE_LOWER,
    pattern_probability=0.3,
    accessory_probability=0.3,
    background_palette=((95, 110, 90), (70, 85, 70), (120, 120, 125), (150, 150, 160), (90, 80, 70)),
    floor_palette=((110, 110, 115), (80, 80, 85), (215, 215, 220)),
    background_jitter=22.0,
    texture_strength=14.0,
    clutter_objects=(2, 5),
    illumination=(0.6, 1.05),
    gamma=(0.9, 1.4),
    colour_cast=0.15,
    blur_radius=(0.3, 1.3),
    noise_std=(3.0, 9.0),
    occlusion_probability=0.3,
)
# The real datasets' counts as our reader sees them (junk dropped), in the look of the presets above.
SYNTHETIC_PRESETS["market1501_scale"] = dataclasses.replace(
    SYNTHETIC_PRESETS["market_style"],
    name="market1501_scale",
    num_train_ids=751,
    num_test_ids=750,
    num_distractor_images=2793,
    num_junk_images=3819,
    num_train_images=12936,
    num_query_images=3368,
    num_gallery_images=15913,
)
SYNTHETIC_PRESETS["dukemtmc_scale"] = dataclasses.replace(
    SYNTHETIC_PRESETS["duke_style"],
    name="dukemtmc_scale",
    num_train_ids=702,
    num_test_ids=702,
    num_distractor_ids=408,
    num_train_images=16522,
    num_query_images=2228,
    num_gallery_images=17661,
)


def resolve_synthetic_preset(preset: str | SyntheticPreset) -> SyntheticPreset:
    """A preset instance, or the registered preset of that name."""
    if isinstance(preset, SyntheticPreset):
        return preset
    if preset not in SYNTHETIC_PRESETS:
        raise InputError(f"synthetic preset {preset!r} is unknown; use one of {sorted(SYNTHETIC_PRESETS)}")
    return SYNTHETIC_PRESETS[preset]


def generate_synthetic_reid(
    root: str | os.PathLike[str], preset: str | SyntheticPreset = "market_style", seed: int = 0
) -> Path:
    """Write the dataset to `root` (Market/Duke folder layout plus `synthetic.json`) and return `root`.

    Returns at once if `root` already holds the complete dataset of this preset and seed;
    raises FileExistsError if `root` is a non-empty folder holding anything else. Images are
    written to a temporary sibling folder that is renamed to `root` when complete.
    """
    preset = resolve_synthetic_preset(preset)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"synthetic seed={seed!r}: use a non-negative integer")
    root = Path(root)
    if _holds_dataset(root, preset, seed):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # A plain mkdir (not tempfile.mkdtemp, which is owner-only) keeps the umask's permissions.
    partial = root.parent / f".{root.name}.partial-{uuid.uuid4().hex}"
    partial.mkdir()
    try:
        counts = _write_images(partial, preset, seed)
        _marker_path(partial).write_text(json.dumps(_marker(preset, seed, counts), indent=2, sort_keys=True) + "\n")
        _move_into_place(partial, root, preset, seed)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root


def ensure_synthetic_reid(
    root: str | os.PathLike[str], preset: str | SyntheticPreset = "market_style", seed: int = 0
) -> Path:
    """Generate the dataset if `root` is missing or empty, else check it holds this preset and seed.

    Besides the checks of `generate_synthetic_reid`, verifies that every split still holds
    as many images as `synthetic.json` records.
    """
    root = generate_synthetic_reid(root, preset, seed)
    counts = read_synthetic_marker(root)["counts"]
    for split in SPLITS:
        found = sum(1 for _ in (root / split).glob("*.jpg"))
        if found != counts[split]["images"]:
            raise InputError(
                f"{root / split} holds {found} images but {_marker_path(root)} records "
                f"{counts[split]['images']}; delete {root} to regenerate it"
            )
    return root


def read_synthetic_marker(root: str | os.PathLike[str]) -> dict:
    """The contents of `root/synthetic.json` (preset fields, seed, counts per split, format version)."""
    return json.loads(_marker_path(Path(root)).read_text())


def _marker_path(root: Path) -> Path:
    return root / MARKER_NAME


def _marker(preset: SyntheticPreset, seed: int, counts: dict) -> dict:
    # Unset exact totals stay out, so datasets written before those fields existed still match.
    fields = {key: value for key, value in dataclasses.asdict(preset).items() if value is not None}
    preset_fields = json.loads(json.dumps(fields))
    return {"format_version": FORMAT_VERSION, "preset": preset_fields, "seed": seed, "counts": counts}


def _holds_dataset(root: Path, preset: SyntheticPreset, seed: int) -> bool:
    """True if `root` is this complete dataset, False if missing or empty; raises if it holds anything else."""
    if not root.exists():
        return False
    if not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder; choose another root for the synthetic dataset")
    if not any(root.iterdir()):
        return False
    if not _marker_path(root).is_file():
        found = "no synthetic.json (not a synthetic dataset, or an interrupted copy)"
    else:
        try:
            marker = read_synthetic_marker(root)
        except ValueError:
            marker = {}
        expected = _marker(preset, seed, marker.get("counts"))
        if marker == expected:
            return True
        found = (
            f"the synthetic dataset of preset {marker.get('preset', {}).get('name')!r}, seed {marker.get('seed')}, "
            f"format version {marker.get('format_version')} (preset fields differ)"
        )
    raise FileExistsError(
        f"{root} is not empty and holds {found}, not the synthetic dataset of preset {preset.name!r} with seed "
        f"{seed}; choose an empty or new root, or delete {root} to regenerate"
    )


def _move_into_place(partial: Path, root: Path, preset: SyntheticPreset, seed: int) -> None:
    try:
        if root.exists():
            root.rmdir()
        partial.rename(root)
    except OSError:
        if not _holds_dataset(root, preset, seed):
            raise


@dataclass(frozen=True)
class _Shot:
    """One image to render: which identity, camera and tracklet index, and where it goes."""

    split: str
    kind: int
    pid: int
    camera: int
    index: int
    file_name: str


def _rng(seed: int, preset: SyntheticPreset, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(preset.name.encode()), *key])


_Tracklet = tuple[int, int, int, list[str]]  # kind, pid, camera, split of each image


def _plan(preset: SyntheticPreset, seed: int) -> list[_Shot]:
    """Every image of the dataset: identities, their cameras, and query/gallery assignment."""
    rng = _rng(seed, preset, _PLAN_STREAM)
    counts = (preset.num_train_ids, preset.num_test_ids, preset.num_distractor_ids)
    pids = rng.choice(np.arange(1, 2 * sum(counts) + 1), size=sum(counts), replace=False)
    parts = np.split(pids, np.cumsum(counts)[:2])
    train_ids, test_ids, distractor_ids = (sorted(int(pid) for pid in part) for part in parts)
    people = _exact_tracklets if preset.has_exact_totals else _drawn_tracklets
    # Lazy generators: their draws interleave with _tracklet's in the one plan stream, in the
    # order that fixes every file name of the existing presets.
    tracklets = itertools.chain(
        people(rng, preset, train_ids, test_ids, distractor_ids), _unnamed_tracklets(rng, preset)
    )
    return [
        shot for kind, pid, camera, splits in tracklets for shot in _tracklet(rng, preset, kind, pid, camera, splits)
    ]


def _drawn_tracklets(
    rng: np.random.Generator,
    preset: SyntheticPreset,
    train_ids: list[int],
    test_ids: list[int],
    distractor_ids: list[int],
) -> Iterator[_Tracklet]:
    """Identities with camera and image counts drawn from the preset's ranges."""
    for pid in train_ids:
        for camera, count in _sightings(rng, preset):
            yield _PERSON, pid, camera, [TRAIN_SPLIT] * count
    for pid in test_ids:
        sightings = _sightings(rng, preset)
        query_cameras = [camera for camera, _ in sightings if rng.random() < preset.query_camera_probability]
        query_cameras = query_cameras or [sightings[rng.integers(len(sightings))][0]]
        for camera, count in sightings:
            queries = min(int(rng.integers(*preset.queries_per_camera, endpoint=True)), count - 1)
            queries = queries if camera in query_cameras else 0
            yield _PERSON, pid, camera, [QUERY_SPLIT] * queries + [GALLERY_SPLIT] * (count - queries)
    for pid in distractor_ids:
        for camera, count in _sightings(rng, preset):
            yield _PERSON, pid, camera, [GALLERY_SPLIT] * count


def _exact_tracklets(
    rng: np.random.Generator,
    preset: SyntheticPreset,
    train_ids: list[int],
    test_ids: list[int],
    distractor_ids: list[int],
) -> Iterator[_Tracklet]:
    """Identities with drawn cameras and the preset's exact image totals spread over them."""
    train, test, distractors = (_camera_pairs(rng, preset, pids) for pids in (train_ids, test_ids, distractor_ids))
    minimum = preset.images_per_camera[0]
    train_counts = _spread(rng, preset.num_train_images, len(train), minimum)
    gallery_total = preset.num_gallery_images - preset.num_distractor_images
    gallery_counts = _spread(rng, gallery_total, len(test) + len(distractors), minimum)
    # One query per test identity in one of its cameras; the remaining queries go to any pair.
    pairs_of: dict[int, list[int]] = {}
    for index, (pid, _) in enumerate(test):
        pairs_of.setdefault(pid, []).append(index)
    firsts = [pairs[rng.integers(len(pairs))] for pairs in pairs_of.values()]
    query_counts = np.bincount(firsts, minlength=len(test)) + _spread(
        rng, preset.num_query_images - len(firsts), len(test), 0
    )
    for (pid, camera), count in zip(train, train_counts.tolist()):
        yield _PERSON, pid, camera, [TRAIN_SPLIT] * count
    for (pid, camera), queries, count in zip(test, query_counts.tolist(), gallery_counts.tolist()):
        yield _PERSON, pid, camera, [QUERY_SPLIT] * queries + [GALLERY_SPLIT] * count
    for (pid, camera), count in zip(distractors, gallery_counts[len(test) :].tolist()):
        yield _PERSON, pid, camera, [GALLERY_SPLIT] * count


def _unnamed_tracklets(rng: np.random.Generator, preset: SyntheticPreset) -> Iterator[_Tracklet]:
    """The gallery's pid 0000 distractor and pid -1 junk images, spread at random over the cameras."""
    for kind, pid, total in (
        (_DISTRACTOR, DISTRACTOR_PID, preset.num_distractor_images),
        (_JUNK, JUNK_PID, preset.num_junk_images),
    ):
        per_camera = np.bincount(rng.integers(preset.num_cameras, size=total), minlength=preset.num_cameras)
        for camera, count in enumerate(per_camera.tolist(), start=1):
            yield kind, pid, camera, [GALLERY_SPLIT] * count


def _cameras(rng: np.random.Generator, preset: SyntheticPreset) -> list[int]:
    """The sorted cameras that see one identity."""
    num = int(rng.integers(*preset.cameras_per_id, endpoint=True))
    return sorted(int(c) for c in rng.choice(np.arange(1, preset.num_cameras + 1), size=num, replace=False))


def _sightings(rng: np.random.Generator, preset: SyntheticPreset) -> list[tuple[int, int]]:
    """(camera, image count) pairs for one identity."""
    return [(camera, int(rng.integers(*preset.images_per_camera, endpoint=True))) for camera in _cameras(rng, preset)]


def _camera_pairs(rng: np.random.Generator, preset: SyntheticPreset, pids: list[int]) -> list[tuple[int, int]]:
    """(pid, camera) for every camera that sees each identity."""
    return [(pid, camera) for pid in pids for camera in _cameras(rng, preset)]


def _spread(rng: np.random.Generator, total: int, slots: int, minimum: int) -> np.ndarray:
    """`slots` counts of at least `minimum` that sum to `total`, the rest placed uniformly at random."""
    return minimum + rng.multinomial(total - minimum * slots, np.full(slots, 1.0 / slots))


def _tracklet(
    rng: np.random.Generator, preset: SyntheticPreset, kind: int, pid: int, camera: int, splits: Sequence[str]
) -> list[_Shot]:
    """Shots of one identity in one camera, with increasing, unique frame numbers."""
    digits = 6 if preset.name_style == "market" else 7
    steps = rng.integers(1, 50, size=len(splits))
    frames = rng.integers(0, 10**digits - int(steps.sum())) + np.cumsum(steps)
    sequence = int(rng.integers(1, 7))
    boxes = rng.integers(1, 9, size=len(splits))
    person = "-1" if pid == JUNK_PID else f"{pid:04d}"
    shots = []
    for index, (split, frame, box) in enumerate(zip(splits, frames.tolist(), boxes.tolist())):
        if preset.name_style == "market":
            name = f"{person}_c{camera}s{sequence}_{frame:06d}_{box:02d}.jpg"
        else:
            name = f"{person}_c{camera}_f{frame:07d}.jpg"
        shots.append(_Shot(split, kind, pid, camera, index, name))
    return shots


def _count(shots: Sequence[_Shot]) -> dict:
    counts = {}
    for split in SPLITS:
        in_split = [shot for shot in shots if shot.split == split]
        counts[split] = {
            "images": len(in_split),
            "identities": len({shot.pid for shot in in_split if shot.pid > 0}),
            "cameras": sorted({shot.camera for shot in in_split}),
            "distractor_images": sum(shot.pid == DISTRACTOR_PID for shot in in_split),
            "junk_images": sum(shot.pid == JUNK_PID for shot in in_split),
        }
    return counts


def _write_images(folder: Path, preset: SyntheticPreset, seed: int) -> dict:
    shots = _plan(preset, seed)
    cameras = [_camera(_rng(seed, preset, _CAMERA_STREAM, c), preset) for c in range(1, preset.num_cameras + 1)]
    identities: dict[int, _Identity] = {}
    for split in SPLITS:
        (folder / split).mkdir()
    for shot in shots:
        rng = _rng(seed, preset, _IMAGE_STREAM, shot.kind, shot.pid + 1, shot.camera, shot.index)
        if shot.kind == _PERSON and shot.pid not in identities:
            identities[shot.pid] = _identity(_rng(seed, preset, _IDENTITY_STREAM, shot.pid), preset)
        identity = identities[shot.pid] if shot.kind == _PERSON else _identity(rng, preset)
        picture = _render(rng, preset, cameras[shot.camera - 1], identity, shot.kind)
        picture.save(folder / shot.split / shot.file_name, format="JPEG", quality=preset.jpeg_quality)
    return _count(shots)


@dataclass(frozen=True)
class _Identity:
    """Appearance fixed for one person: clothing, body proportions (fractions of height), accessories."""

    upper: np.ndarray
    upper_second: np.ndarray
    pattern: str
    stripe_period: float
    long_sleeves: bool
    lower: np.ndarray
    lower_kind: str
    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    shoes: np.ndarray
    shoulder: float
    leg: float
    head: float
    bag_side: int
    backpack: np.ndarray | None
    bag: np.ndarray | None
    hat: np.ndarray | None
    scarf: np.ndarray | None


@dataclass(frozen=True)
class _Camera:
    """Scene and optics fixed for one camera."""

    wall_top: np.ndarray
    wall_bottom: np.ndarray
    floor: np.ndarray
    floor_level: float
    gains: np.ndarray
    illumination: float
    gamma: float
    blur: float
    noise: float


def _pick(rng: np.random.Generator, palette: Sequence[RGB], jitter: float) -> np.ndarray:
    colour = np.asarray(palette[rng.integers(len(palette))], dtype=np.float32)
    return np.clip(colour + rng.normal(0.0, jitter, 3), 0, 255).astype(np.float32)


def _identity(rng: np.random.Generator, preset: SyntheticPreset) -> _Identity:
    jitter = preset.clothing_jitter

    def accessory(palette: Sequence[RGB]) -> np.ndarray | None:
        return _pick(rng, palette, jitter) if rng.random() < preset.accessory_probability else None

    patterned = rng.random() < preset.pattern_probability
    return _Identity(
        upper=_pick(rng, preset.upper_palette, jitter),
        upper_second=_pick(rng, preset.upper_palette, jitter),
        pattern=_PATTERNS[rng.integers(len(_PATTERNS))] if patterned else "solid",
        stripe_period=float(rng.uniform(0.03, 0.06)),
        long_sleeves=bool(rng.random() < 0.5),
        lower=_pick(rng, preset.lower_palette, jitter),
        lower_kind=_LOWER_KINDS[rng.integers(len(_LOWER_KINDS))],
        skin=_pick(rng, _SKIN_TONES, 6.0),
        hair=_pick(rng, _HAIR_COLOURS, 6.0),
        long_hair=bool(rng.random() < 0.35),
        shoes=_pick(rng, _SHOE_COLOURS, 8.0),
        shoulder=float(rng.uniform(0.115, 0.16)),
        leg=float(rng.uniform(0.44, 0.52)),
        head=float(rng.uniform(0.055, 0.072)),
        bag_side=int(rng.choice((-1, 1))),
        backpack=accessory(preset.lower_palette),
        bag=accessory(preset.upper_palette),
        hat=accessory(preset.upper_palette),
        scarf=accessory(preset.upper_palette),
    )


def _camera(rng: np.random.Generator, preset: SyntheticPreset) -> _Camera:
    return _Camera(
        wall_top=_pick(rng, preset.background_palette, 15.0),
        wall_bottom=_pick(rng, preset.background_palette, 15.0),
        floor=_pick(rng, preset.floor_palette, 10.0),
        floor_level=float(rng.uniform(0.55, 0.85)),
        gains=(1.0 + rng.uniform(-preset.colour_cast, preset.colour_cast, 3)).astype(np.float32),
        illumination=float(rng.uniform(*preset.illumination)),
        gamma=float(rng.uniform(*preset.gamma)),
        blur=float(rng.uniform(*preset.blur_radius)),
        noise=float(rng.uniform(*preset.noise_std)),
    )


def _render(
    rng: np.random.Generator, preset: SyntheticPreset, camera: _Camera, identity: _Identity, kind: int
) -> Image.Image:
    """One RGB image: scene, person (none or a fragment for junk), occlusion, then camera effects."""
    image = _background(rng, preset, camera)
    low, high = preset.person_height
    # Market's pid 0000 boxes are poor detections: people far too small or cut off.
    if kind == _DISTRACTOR:
        low, high = 0.55 * low, 1.2 * high
    if kind != _JUNK or rng.random() < 0.5:
        scale = rng.uniform(1.5, 2.3) if kind == _JUNK else rng.uniform(low, high)
        person = float(scale * preset.height)
        foot = rng.uniform(min(person, preset.height), max(person, preset.height))
        centre = preset.width * (0.5 + rng.uniform(-preset.horizontal_jitter, preset.horizontal_jitter))
        view = _VIEWS[rng.integers(len(_VIEWS))]
        _draw_person(image, rng, identity, view, float(foot - person), float(centre), person)
        if rng.random() < preset.occlusion_probability:
            _occlude(image, rng, preset, float(foot - person), float(centre), person)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    return _photograph(image, rng, preset, camera)


def _background(rng: np.random.Generator, preset: SyntheticPreset, camera: _Camera) -> np.ndarray:
    height, width = preset.height, preset.width
    shift = rng.normal(0.0, preset.background_jitter, 3).astype(np.float32)
    level = (camera.floor_level + rng.uniform(-0.05, 0.05)) * height
    rows = (np.arange(height, dtype=np.float32) + 0.5)[:, None]
    wall = camera.wall_top + (rows / level) * (camera.wall_bottom - camera.wall_top)
    floor = camera.floor * (0.85 + 0.15 * (rows - level) / (height - level))
    columns = np.where(rows < level, wall, floor) + shift
    coarse = rng.normal(0.0, preset.texture_strength, (5, 3, 3)).astype(np.float32)
    image = columns[:, None, :] + _upsample(coarse, height, width)
    for _ in range(int(rng.integers(*preset.clutter_objects, endpoint=True))):
        colour = 0.3 * rng.uniform(0, 255, 3) + 0.7 * _pick(rng, preset.background_palette, 20.0)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        if rng.random() < 0.5:
            _ellipse(image, colour, cy, cx, rng.uniform(4, 20), rng.uniform(3, 14))
        else:
            half = rng.uniform(1.5, 8)
            _trapezoid(image, colour, cy - rng.uniform(10, 60), cy + rng.uniform(5, 30), cx, half, half)
    return image


def _upsample(coarse: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a small (h, w, 3) grid to (height, width, 3) by separable interpolation."""
    rows = np.tensordot(_interpolation_matrix(coarse.shape[0], height), coarse, axes=1)
    return np.matmul(_interpolation_matrix(coarse.shape[1], width), rows)


@functools.lru_cache(maxsize=8)
def _interpolation_matrix(size: int, length: int) -> np.ndarray:
    positions = (np.arange(length, dtype=np.float32) + 0.5) / length * (size - 1)
    return np.clip(1.0 - np.abs(positions[:, None] - np.arange(size, dtype=np.float32)[None, :]), 0.0, 1.0)


def _photograph(image: np.ndarray, rng: np.random.Generator, preset: SyntheticPreset, camera: _Camera) -> Image.Image:
    """Camera effects in sensor order: optical blur, illumination and colour cast, noise, gamma."""
    image = _blur(image, camera.blur * rng.uniform(0.7, 1.3))
    gain = camera.illumination * (1.0 + rng.uniform(-preset.illumination_jitter, preset.illumination_jitter))
    gains = gain * camera.gains * (1.0 + rng.normal(0.0, preset.colour_cast_jitter, 3))
    # Uniform noise from raw bytes: several times cheaper than normal draws, same std.
    noise = np.frombuffer(rng.bytes(image.size), dtype=np.uint8).reshape(image.shape).astype(np.float32)
    image = image * gains.astype(np.float32) + (noise - 127.5) * (camera.noise * math.sqrt(3.0) / 127.5)
    gamma = camera.gamma * rng.uniform(0.93, 1.07)
    response = (255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)
    return Image.fromarray(np.take(response, np.clip(image, 0, 255).astype(np.uint8)))


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable 5-tap Gaussian blur with edge padding."""
    if sigma < 0.1:
        return image
    taps = np.exp(-0.5 * (np.arange(-2, 3) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    return _filter_columns(_filter_columns(image, taps).swapaxes(0, 1), taps).swapaxes(0, 1)


def _filter_columns(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Correlate along axis 0 with 5 taps, repeating the edge rows."""
    length = image.shape[0]
    padded = np.concatenate([image[:1], image[:1], image, image[-1:], image[-1:]])
    filtered = taps[0] * padded[:length]
    for offset in range(1, 5):
        filtered += taps[offset] * padded[offset : offset + length]
    return filtered


def _occlude(
    image: np.ndarray, rng: np.random.Generator, preset: SyntheticPreset, top: float, centre: float, person: float
) -> None:
    """Cover part of the person: a bar from below (bench, car) or a vertical post/pedestrian."""
    colour = _pick(rng, preset.background_palette if rng.random() < 0.5 else preset.upper_palette, 20.0)
    if rng.random() < 0.5:
        bar_top = top + person * rng.uniform(0.55, 0.85)
        _trapezoid(image, colour, bar_top, preset.height, centre, preset.width, preset.width)
    else:
        half = person * rng.uniform(0.04, 0.1)
        x = centre + person * rng.uniform(-0.15, 0.15)
        _trapezoid(image, colour, top + person * rng.uniform(-0.1, 0.3), preset.height, x, half, half)


def _draw_person(
    image: np.ndarray, rng: np.random.Generator, who: _Identity, view: str, top: float, cx: float, size: float
) -> None:
    """Paint a person of height `size` px standing with head top at `top` and centre column `cx`.

    The unflipped side view faces +x; the caller mirrors half of the images.
    """
    head_ry = who.head * size
    head_rx = 0.82 * head_ry
    head_y = top + 1.05 * head_ry
    shoulder_y = head_y + head_ry + 0.02 * size
    foot_y = top + size
    hip_y = foot_y - who.leg * size
    half = who.shoulder * size * (0.62 if view == "side" else 1.0)
    hip_half = 0.8 * half
    bag_side = -who.bag_side if view == "back" else who.bag_side

    if who.long_hair and view != "back":
        offset = -0.3 * head_rx if view == "side" else 0.0
        _trapezoid(image, who.hair, head_y, shoulder_y + 0.08 * size, cx + offset, 1.05 * head_rx, 1.15 * head_rx)
    if who.backpack is not None and view == "side":
        _trapezoid(
            image,
            who.backpack,
            shoulder_y + 0.02 * size,
            shoulder_y + 0.28 * size,
            cx - half - 0.04 * size,
            0.06 * size,
            0.065 * size,
        )

    _draw_legs(image, rng, who, view, cx, hip_y, hip_half, foot_y, size)
    torso_colour = _clothing(who, shoulder_y, hip_y, cx, size)
    _trapezoid(image, torso_colour, shoulder_y, hip_y + 0.03 * size, cx, half, hip_half)
    if who.scarf is not None:
        _trapezoid(image, who.scarf, shoulder_y - 0.02 * size, shoulder_y + 0.035 * size, cx, 0.55 * half, 0.6 * half)
    _draw_arms(image, rng, who, view, cx, shoulder_y, half, size)

    if who.backpack is not None and view == "back":
        _trapezoid(image, who.backpack, shoulder_y + 0.03 * size, shoulder_y + 0.3 * size, cx, 0.72 * half, 0.78 * half)
    if who.backpack is not None and view == "front":
        for side in (-1, 1):
            _capsule(
                image,
                who.backpack,
                (shoulder_y, cx + side * 0.55 * half),
                (shoulder_y + 0.2 * size, cx + side * 0.62 * half),
                0.012 * size,
            )
    if who.bag is not None:
        bag_x = cx + 0.02 * size if view == "side" else cx + bag_side * (half + 0.035 * size)
        if view != "side":
            strap_top = (shoulder_y, cx - bag_side * 0.6 * half)
            _capsule(image, who.bag, strap_top, (hip_y - 0.06 * size, bag_x), 0.01 * size)
        _trapezoid(image, who.bag, hip_y - 0.06 * size, hip_y + 0.08 * size, bag_x, 0.045 * size, 0.05 * size)
    if who.long_hair and view == "back":
        _trapezoid(image, who.hair, head_y, shoulder_y + 0.1 * size, cx, 1.0 * head_rx, 1.1 * head_rx)
    _draw_head(image, who, view, head_y, cx, head_ry, head_rx)


def _clothing(who: _Identity, shoulder_y: float, hip_y: float, cx: float, size: float) -> Colour:
    """The upper garment's colour as a function of pixel coordinates (its pattern)."""
    if who.pattern == "solid":
        return who.upper
    period = who.stripe_period * size
    middle = 0.5 * (shoulder_y + hip_y)

    def colour(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        rows, columns = np.floor((ys - shoulder_y) / period), np.floor((xs - cx) / period)
        if who.pattern == "horizontal_stripes":
            second = rows % 2
        elif who.pattern == "vertical_stripes":
            second = columns % 2
        elif who.pattern == "checks":
            second = (rows + columns) % 2
        else:
            second = ys > middle
        return who.upper + second[..., None].astype(np.float32) * (who.upper_second - who.upper)

    return colour


def _draw_legs(
    image: np.ndarray,
    rng: np.random.Generator,
    who: _Identity,
    view: str,
    cx: float,
    hip_y: float,
    hip_half: float,
    foot_y: float,
    size: float,
) -> None:
    radius = 0.048 * size
    ankle_y = foot_y - 0.03 * size
    spread = rng.uniform(0.0, 0.06) * size
    if view == "side":
        stride = rng.uniform(0.0, 0.14) * size
        hips = [(hip_y, cx), (hip_y, cx)]
        ankles = [(ankle_y, cx - stride), (ankle_y, cx + stride)]
    else:
        hips = [(hip_y, cx - 0.5 * hip_half), (hip_y, cx + 0.5 * hip_half)]
        ankles = [(ankle_y, cx - 0.5 * hip_half - spread), (ankle_y, cx + 0.5 * hip_half + spread)]
    leg_colour = who.lower if who.lower_kind == "trousers" else who.skin
    toe = 0.02 * size if view == "side" else 0.0
    for hip, ankle in zip(hips, ankles):
        _capsule(image, leg_colour, hip, ankle, radius)
        if who.lower_kind == "shorts":
            knee = (hip[0] + 0.45 * (ankle[0] - hip[0]), hip[1] + 0.45 * (ankle[1] - hip[1]))
            _capsule(image, who.lower, hip, knee, 1.15 * radius)
        _ellipse(image, who.shoes, ankle_y + 0.012 * size, ankle[1] + toe, 0.022 * size, 0.045 * size)
    if who.lower_kind == "skirt":
        _trapezoid(image, who.lower, hip_y - 0.02 * size, hip_y + 0.2 * size, cx, hip_half, 1.35 * hip_half)
    else:
        _trapezoid(image, who.lower, hip_y - 0.02 * size, hip_y + 0.06 * size, cx, hip_half, hip_half)


def _draw_arms(
    image: np.ndarray,
    rng: np.random.Generator,
    who: _Identity,
    view: str,
    cx: float,
    shoulder_y: float,
    half: float,
    size: float,
) -> None:
    radius = 0.034 * size
    if view == "side":
        joints = [((shoulder_y + radius, cx), float(rng.uniform(-0.5, 0.5)))]
    else:
        joints = [
            ((shoulder_y + radius, cx + side * (half - 0.6 * radius)), side * float(rng.uniform(0.05, 0.35)))
            for side in (-1, 1)
        ]
    for shoulder, angle in joints:
        bend = float(rng.uniform(0.0, 0.4)) * math.copysign(1.0, angle)
        elbow = (shoulder[0] + 0.17 * size * math.cos(angle), shoulder[1] + 0.17 * size * math.sin(angle))
        hand = (elbow[0] + 0.16 * size * math.cos(angle - bend), elbow[1] + 0.16 * size * math.sin(angle - bend))
        _capsule(image, who.upper, shoulder, elbow, radius)
        _capsule(image, who.upper if who.long_sleeves else who.skin, elbow, hand, 0.9 * radius)
        _ellipse(image, who.skin, hand[0], hand[1], 0.9 * radius, 0.9 * radius)


def _draw_head(image: np.ndarray, who: _Identity, view: str, head_y: float, cx: float, ry: float, rx: float) -> None:
    if view == "back":
        _ellipse(image, who.hair, head_y, cx, 1.02 * ry, 1.05 * rx)
    elif view == "front":
        _ellipse(image, who.hair, head_y - 0.15 * ry, cx, ry, 1.08 * rx)
        _ellipse(image, who.skin, head_y + 0.12 * ry, cx, 0.85 * ry, 0.9 * rx)
    else:
        _ellipse(image, who.skin, head_y, cx + 0.1 * rx, ry, 0.95 * rx)
        _ellipse(image, who.hair, head_y - 0.15 * ry, cx - 0.25 * rx, 0.9 * ry, 0.85 * rx)
    if who.hat is not None:
        _ellipse(image, who.hat, head_y - 0.55 * ry, cx, 0.55 * ry, 1.15 * rx)


def _window(image: np.ndarray, y0: float, y1: float, x0: float, x1: float) -> tuple | None:
    """Slices of the box clipped to the image and its pixel-centre coordinates, or None if empty."""
    height, width = image.shape[:2]
    top, bottom = max(int(y0), 0), min(math.ceil(y1), height)
    left, right = max(int(x0), 0), min(math.ceil(x1), width)
    if top >= bottom or left >= right:
        return None
    ys = np.arange(top, bottom, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(left, right, dtype=np.float32)[None, :] + 0.5
    return (slice(top, bottom), slice(left, right)), ys, xs


def _unit(values: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] in place (pixel coverage); cheaper than np.clip on small arrays."""
    return np.minimum(np.maximum(values, 0.0, out=values), 1.0, out=values)


def _blend(image: np.ndarray, window: tuple, coverage: np.ndarray, colour: Colour) -> None:
    region, ys, xs = window
    paint = colour(ys, xs) if callable(colour) else colour
    target = image[region]
    target += coverage[..., None] * (paint - target)


def _ellipse(image: np.ndarray, colour: Colour, cy: float, cx: float, ry: float, rx: float) -> None:
    window = _window(image, cy - ry - 1, cy + ry + 1, cx - rx - 1, cx + rx + 1)
    if window is None:
        return
    _, ys, xs = window
    distance = np.sqrt(((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2)
    _blend(image, window, _unit((1.0 - distance) * min(rx, ry) + 0.5), colour)


def _capsule(
    image: np.ndarray, colour: Colour, start: tuple[float, float], end: tuple[float, float], radius: float
) -> None:
    """A thick line segment with round ends (limbs, straps); points are (y, x)."""
    (y0, x0), (y1, x1) = start, end
    window = _window(
        image, min(y0, y1) - radius - 1, max(y0, y1) + radius + 1, min(x0, x1) - radius - 1, max(x0, x1) + radius + 1
    )
    if window is None:
        return
    _, ys, xs = window
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((ys - y0) * dy + (xs - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0.0, 1.0)
    distance = np.sqrt((ys - y0 - t * dy) ** 2 + (xs - x0 - t * dx) ** 2)
    _blend(image, window, _unit(radius - distance + 0.5), colour)


def _trapezoid(
    image: np.ndarray, colour: Colour, y0: float, y1: float, cx: float, half_top: float, half_bottom: float
) -> None:
    """A vertical trapezoid centred on column `cx` (torso, skirt, bags, occluders)."""
    widest = max(half_top, half_bottom)
    window = _window(image, y0 - 1, y1 + 1, cx - widest - 1, cx + widest + 1)
    if window is None:
        return
    _, ys, xs = window
    half = half_top + (ys - y0) / max(y1 - y0, 1e-6) * (half_bottom - half_top)
    inside = _unit(half - np.abs(xs - cx) + 0.5) * _unit(np.minimum(ys - y0, y1 - ys) + 0.5)
    _blend(image, window, inside, colour)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: generate (or find) a synthetic dataset and print a summary."""
    parser = argparse.ArgumentParser(prog="python -m lfm.data.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="dataset folder to create")
    parser.add_argument("--preset", choices=sorted(SYNTHETIC_PRESETS), default="market_style")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the preset's identities (and exact image totals)"
    )
    args = parser.parse_args(argv)
    preset = SYNTHETIC_PRESETS[args.preset].scaled(args.scale)
    start = time.perf_counter()
    try:
        root = generate_synthetic_reid(args.root, preset, args.seed)
    except (FileExistsError, InputError) as error:
        parser.exit(2, f"error: {error}\n")
    elapsed = time.perf_counter() - start
    print(f"{args.preset} (seed {args.seed}) ready at {root} in {elapsed:.1f} s")
    counts = read_synthetic_marker(root)["counts"]
    for split in SPLITS:
        count = counts[split]
        cameras = ",".join(str(c) for c in count["cameras"])
        print(
            f"  {split:<20} {count['images']:>6} images {count['identities']:>5} ids  cameras {cameras}  "
            f"distractors {count['distractor_images']}  junk {count['junk_images']}"
        )


if __name__ == "__main__":
    main()
