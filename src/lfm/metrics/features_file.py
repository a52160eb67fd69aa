"""The feature file: a test's query and gallery features with their identities, for later analysis.

One NumPy ``.npz`` (no pickled objects; ``np.load`` reads it without ``allow_pickle``):

    query_features   float32 [Q, D]    gallery_features   float32 [G, D]
    query_pids       int64 [Q]         gallery_pids       int64 [G]
    query_camids     int64 [Q]         gallery_camids     int64 [G]
    query_paths      str [Q]           gallery_paths      str [G]     (image files)
    settings         str: JSON {"distance", "ap", "rerank_settings", "checkpoint", "dataset"}

``python -m lfm.metrics <file> [--rerank]`` evaluates it.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lfm.errors import InputError

ARRAYS = tuple(f"{side}_{name}" for side in ("query", "gallery") for name in ("features", "pids", "camids", "paths"))


@dataclass(frozen=True)
class FeatureFile:
    query_features: np.ndarray
    gallery_features: np.ndarray
    query_pids: np.ndarray
    gallery_pids: np.ndarray
    query_camids: np.ndarray
    gallery_camids: np.ndarray
    query_paths: np.ndarray
    gallery_paths: np.ndarray
    settings: dict

    def ranking_inputs(self) -> tuple[torch.Tensor, ...]:
        """(query features, gallery features, q_pids, g_pids, q_camids, g_camids) as tensors."""
        names = ("query_features", "gallery_features", "query_pids", "gallery_pids", "query_camids", "gallery_camids")
        return tuple(torch.from_numpy(getattr(self, name)) for name in names)


def save_features(path: Path, samples: dict[str, torch.Tensor], image_paths: list[str], settings: dict) -> Path:
    """Write a test's gathered samples (features, pids, camids, is_query, in dataset order) and their image paths."""
    if len(image_paths) != samples["features"].shape[0]:
        raise ValueError(f"{len(image_paths)} image paths for {samples['features'].shape[0]} samples")
    is_query = samples["is_query"].numpy()
    paths = np.array([str(image) for image in image_paths])
    arrays = {}
    for side, rows in (("query", is_query), ("gallery", ~is_query)):
        arrays[f"{side}_features"] = samples["features"].to(torch.float32).numpy()[rows]
        arrays[f"{side}_pids"] = samples["pids"].numpy()[rows]
        arrays[f"{side}_camids"] = samples["camids"].numpy()[rows]
        arrays[f"{side}_paths"] = paths[rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays, settings=np.array(json.dumps(settings)))
    return path


def load_features(path: Path) -> FeatureFile:
    """Read a feature file, with a one-line error naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"feature file {path} does not exist; write one with src/eval.py save_features=true")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in (*ARRAYS, "settings") if name not in data.files]
            if missing:
                raise InputError(
                    f"{path} is not a feature file (missing {', '.join(missing)}); "
                    f"write one with src/eval.py save_features=true"
                )
            return FeatureFile(**{name: data[name] for name in ARRAYS}, settings=json.loads(str(data["settings"])))
    except (OSError, ValueError):
        raise InputError(
            f"cannot read feature file {path}: not a .npz written by src/eval.py save_features=true"
        ) from None
