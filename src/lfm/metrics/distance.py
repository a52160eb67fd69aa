"""Distances between re-ID features: the one definition every metric and re-ranking uses."""

from typing import Literal

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray
Distance = Literal["cosine", "euclidean"]
DISTANCES = ("cosine", "euclidean")


def check_distance(distance: str) -> None:
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


def check_finite(values: torch.Tensor, name: str) -> None:
    # aminmax propagates NaN and is one cheap pass, unlike isfinite().all().
    if values.numel() and not torch.isfinite(torch.stack(torch.aminmax(values))).all():
        raise ValueError(f"{name} contains NaN or infinite values; they must be finite")


def prepare_features(features: torch.Tensor, distance: Distance) -> torch.Tensor:
    """Features in at least float32 (half precision ties far more often), L2-normalised for cosine."""
    features = features.to(torch.promote_types(features.dtype, torch.float32))
    return torch.nn.functional.normalize(features, dim=1) if distance == "cosine" else features


def prepared_distance(query: torch.Tensor, gallery: torch.Tensor, distance: Distance) -> torch.Tensor:
    """[Q, G] distances between features already passed through :func:`prepare_features`."""
    dtype = torch.promote_types(query.dtype, gallery.dtype)
    query, gallery = query.to(dtype), gallery.to(dtype)
    return 1 - query @ gallery.T if distance == "cosine" else torch.cdist(query, gallery)


def pairwise_distance(query: torch.Tensor, gallery: torch.Tensor, distance: Distance) -> torch.Tensor:
    """Distance matrix [Q, G] between query [Q, D] and gallery [G, D] features.

    ``cosine``: 1 - cosine similarity (features are L2-normalised here).
    ``euclidean``: plain (not squared) Euclidean distance on the features as given.
    Half-precision features are computed in float32, where far fewer distances tie.
    """
    check_distance(distance)
    check_feature_shapes(query, gallery)
    return prepared_distance(prepare_features(query, distance), prepare_features(gallery, distance), distance)


def check_feature_shapes(query: torch.Tensor, gallery: torch.Tensor) -> None:
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query and gallery features must be 2-D with the same feature size, got shapes "
            f"{tuple(query.shape)} and {tuple(gallery.shape)}"
        )
