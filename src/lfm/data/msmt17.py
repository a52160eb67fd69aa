"""MSMT17 on-disk layout, V1 and V2 releases: image folders named by list files.

`data.root` is the release folder (MSMT17_V1/ or MSMT17_V2/). It holds the list files
list_train.txt, list_val.txt, list_query.txt, list_gallery.txt and two image folders: V1
`train/` and `test/`, V2 (faces blurred) `mask_train_v2/` and `mask_test_v2/`; the version is
read from which pair is there. Each list line is `<pid folder>/<file name> <pid>`, e.g.
`0000/0000_000_01_0303morning_0015_0.jpg 0`, relative to the train folder (list_train,
list_val) or the test folder (list_query, list_gallery); the file name's third field is the
camera, 01..15. Pids are kept as listed: training pids 0..1040, and query and gallery share a
numbering of their own (0..3059).

Training reads list_train.txt only, as torchreid and fast-reid do by default (list_val.txt
holds other images of the same 1,041 identities; their note: leave it out to compare with
published results). The dataset summary counts both, as the published 32,621 training images do.
"""

from pathlib import Path

from lfm.data.market import ReIDSample
from lfm.errors import InputError

VERSION_FOLDERS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}
SPLIT_LISTS = {
    "train": "list_train.txt",
    "val": "list_val.txt",
    "query": "list_query.txt",
    "gallery": "list_gallery.txt",
}
TRAIN_FOLDER_SPLITS = ("train", "val")
# MSMT17 numbers people from 0: no pid marks distractor images.
DISTRACTOR_PID = None
LINE_EXAMPLE = "0000/0000_000_01_0303morning_0015_0.jpg 0"
LAYOUT_HINT = (
    "expected an MSMT17 release folder with list_train.txt, list_val.txt, list_query.txt, list_gallery.txt and "
    "train/ + test/ (MSMT17_V1) or mask_train_v2/ + mask_test_v2/ (MSMT17_V2)"
)


def detect_version(root: Path) -> str:
    """ "V1" or "V2", from which pair of image folders `root` holds."""
    found = [version for version, folders in VERSION_FOLDERS.items() if all((root / f).is_dir() for f in folders)]
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(
            f"data.root={root} holds the image folders of both MSMT17 releases; point data.root at a folder "
            f"with one of them"
        )
    releases = [f"{root / name}" for name in ("MSMT17_V1", "MSMT17_V2") if (root / name).is_dir()]
    fix = f"; set data.root={releases[0]}" if releases else ""
    raise InputError(f"data.root={root} holds no MSMT17 image folders{fix}; {LAYOUT_HINT}")


def check_layout(root: Path) -> None:
    """Raise an InputError naming what is missing unless `root` is an MSMT17 V1 or V2 folder."""
    if not root.is_dir():
        raise InputError(f"data.root={root} does not exist; {LAYOUT_HINT}")
    detect_version(root)
    for list_name in SPLIT_LISTS.values():
        list_path(root, list_name)


def list_path(root: Path, list_name: str) -> Path:
    path = root / list_name
    if not path.is_file():
        raise InputError(f"MSMT17 list file {path} does not exist (key data.root); {LAYOUT_HINT}")
    return path


def parse_list_line(line: str) -> tuple[str, int, int]:
    """(relative image path, pid, camid) from one list line, e.g. `0000/0000_000_01_0303morning_0015_0.jpg 0`."""
    fields = line.split()
    if len(fields) != 2 or not fields[1].isdigit():
        raise ValueError
    name_fields = Path(fields[0]).name.split("_")
    if len(name_fields) < 3 or not name_fields[2].isdigit():
        raise ValueError
    return fields[0], int(fields[1]), int(name_fields[2])


def read_split(root: Path, split: str) -> list[ReIDSample]:
    """The samples of one split (train, val, query or gallery) in list-file order."""
    train_folder, test_folder = VERSION_FOLDERS[detect_version(root)]
    folder = root / (train_folder if split in TRAIN_FOLDER_SPLITS else test_folder)
    path = list_path(root, SPLIT_LISTS[split])
    samples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            relative, pid, camid = parse_list_line(line)
        except ValueError:
            raise InputError(
                f"{path} line {number}: expected '<pid folder>/<file name> <pid>' like '{LINE_EXAMPLE}' "
                f"(camera in the file name's third field), got {line.strip()!r}"
            ) from None
        image = folder / relative
        if not image.is_file():
            raise InputError(f"{path} line {number} names {image}, which does not exist; restore the file or the list")
        samples.append(ReIDSample(image, pid, camid))
    if not samples:
        raise InputError(f"{path} lists no images (key data.root); expected lines like '{LINE_EXAMPLE}'")
    return samples


def read_published_splits(root: Path) -> dict[str, list[ReIDSample]]:
    """The splits as published (what the dataset summary counts): train holds list_train.txt and list_val.txt."""
    return {
        "train": read_split(root, "train") + read_split(root, "val"),
        "query": read_split(root, "query"),
        "gallery": read_split(root, "gallery"),
    }
