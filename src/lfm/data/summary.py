"""The dataset summary: what a re-ID dataset on disk holds, beside the published counts of the real dataset.

ReIDDataModule prints it at its first setup when `data.published_counts` names the real dataset, and
`python -m lfm.data` prints it without training. Each count that differs from the published one gets a
warning line, so a partial download or extraction shows before training starts. Only file names (and
MSMT17's list files) are read; no image is decoded.
"""

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from lfm.data.market import JUNK_PID, ReIDSample
from lfm.errors import InputError

# count -> its row in the table
COUNT_LABELS = {
    "train_ids": "train ids",
    "train_images": "train images",
    "query_images": "query images",
    "gallery_images": "gallery images",
    "junk_images": "junk images (pid -1)",
    "distractor_images": "distractor images (pid 0000)",
    "distractor_ids": "distractor ids (gallery only)",
    "cameras": "cameras",
}


@dataclass(frozen=True)
class PublishedCounts:
    """A real dataset's published counts (keys of COUNT_LABELS); a count left out is shown blank, not compared."""

    title: str
    counts: Mapping[str, int]
    note: str = ""


# data.published_counts -> the counts its authors publish (image counts as files or list lines on disk).
PUBLISHED_COUNTS = {
    "market1501": PublishedCounts(
        "Market-1501",
        {
            "train_ids": 751,
            "train_images": 12936,
            "query_images": 3368,
            "gallery_images": 19732,
            "junk_images": 3819,
            "distractor_images": 2793,
            "cameras": 6,
        },
        note="gallery images include the junk images, which evaluation drops",
    ),
    "dukemtmc": PublishedCounts(
        "DukeMTMC-reID",
        {
            "train_ids": 702,
            "train_images": 16522,
            "query_images": 2228,
            "gallery_images": 17661,
            "junk_images": 0,
            "distractor_ids": 408,
            "cameras": 8,
        },
    ),
    "msmt17": PublishedCounts(
        "MSMT17 (V1 and V2)",
        {"train_ids": 1041, "train_images": 32621, "query_images": 11659, "gallery_images": 82161, "cameras": 15},
        note="train images are list_train.txt + list_val.txt, as published; training reads list_train.txt only",
    ),
    "cuhk03_np_labeled": PublishedCounts(
        "CUHK03-NP labeled",
        {"train_ids": 767, "train_images": 7368, "query_images": 1400, "gallery_images": 5328, "cameras": 2},
    ),
    "cuhk03_np_detected": PublishedCounts(
        "CUHK03-NP detected",
        {"train_ids": 767, "train_images": 7365, "query_images": 1400, "gallery_images": 5332, "cameras": 2},
    ),
}


def find_published_counts(name: str) -> PublishedCounts:
    """The published counts of `name` (a key of PUBLISHED_COUNTS)."""
    if name not in PUBLISHED_COUNTS:
        raise InputError(f"data.published_counts must be one of {list(PUBLISHED_COUNTS)} or null, got {name!r}")
    return PUBLISHED_COUNTS[name]


def dataset_counts(splits: Mapping[str, list[ReIDSample]], distractor_pid: int | None) -> dict[str, int]:
    """The summary's counts of the train, query and gallery samples (junk included) of a layout whose
    distractor images carry `distractor_pid` (None: the layout has none)."""
    unnamed = {JUNK_PID, distractor_pid}
    samples = [sample for split in ("train", "query", "gallery") for sample in splits[split]]
    query_ids = {sample.pid for sample in splits["query"]}
    gallery_ids = {sample.pid for sample in splits["gallery"]} - unnamed
    return {
        "train_ids": len({sample.pid for sample in splits["train"]} - unnamed),
        "train_images": len(splits["train"]),
        "query_images": len(splits["query"]),
        "gallery_images": len(splits["gallery"]),
        "junk_images": sum(sample.pid == JUNK_PID for sample in samples),
        "distractor_images": sum(sample.pid == distractor_pid for sample in samples),
        "distractor_ids": len(gallery_ids - query_ids),
        "cameras": len({sample.camid for sample in samples}),
    }


def format_summary(root: Path, counts: Mapping[str, int], published: PublishedCounts | None) -> str:
    """The table: one row per count, the counts found at `root` beside the published ones."""
    title = published.title if published else "no published counts (data.published_counts is null)"
    expected = published.counts if published else {}
    width = max(len(label) for label in COUNT_LABELS.values())
    lines = [f"Dataset summary of {root}: {title}", f"{'':<{width}}  {'found':>7}  {'published':>9}"]
    for key, label in COUNT_LABELS.items():
        shown = f"{expected[key]:,}" if key in expected else ""
        lines.append(f"{label:<{width}}  {counts[key]:>7,}  {shown:>9}".rstrip())
    if published and published.note:
        lines.append(f"({published.note})")
    return "\n".join(lines)


def summary_warnings(root: Path, counts: Mapping[str, int], published: PublishedCounts) -> list[str]:
    """One line per count that differs from its published value: which count, and by how much."""
    lines = []
    for key, expected in published.counts.items():
        found = counts[key]
        if found != expected:
            difference = f"{abs(found - expected):,} {'fewer' if found < expected else 'more'}"
            lines.append(
                f"warning: {COUNT_LABELS[key]}: {found:,} found, {difference} than the {expected:,} published for "
                f"{published.title} (data.root={root}); is the download or extraction complete?"
            )
    return lines


def print_summary(layout: ModuleType, root: Path, published: PublishedCounts | None) -> None:
    """Print the summary of the dataset at `root` read by `layout` (a reader in lfm.data) on stdout, its
    warnings on stderr."""
    counts = dataset_counts(layout.read_published_splits(root), layout.DISTRACTOR_PID)
    print(format_summary(root, counts, published), flush=True)
    for line in summary_warnings(root, counts, published) if published else []:
        print(line, file=sys.stderr, flush=True)
