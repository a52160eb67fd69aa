"""Retrieval attack losses on query images, one value per query (to maximise).

Each loss is computed on the exact evaluation feature, `ReIDNet.retrieval_features(images,
flip)`, and compares features the way the metric does (`distance`: cosine compares
L2-normalised features, see lfm.metrics.reid.pairwise_distance).

- SMA (self metric attack): push the feature away from the query's own clean feature. At
  x_adv = x this distance is at its minimum and its gradient is zero, so SMA starts from a
  random point of the eps-ball (see NEEDS_RANDOM_START).
- ODFA (opposite-direction feature attack, Zheng et al.): pull the feature toward -f(x). The
  pull is measured on the feature before normalisation: after L2 normalisation it would be a
  function of the cosine alone, again with a zero gradient at x_adv = x.
- metric (Bai et al., label-aware metric attack): push the feature away from the clean
  features of the query's true matches in the gallery (same person, another camera).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lfm.metrics.distance import pairwise_distance

REID_LOSSES = ("sma", "odfa", "metric")
NEEDS_RANDOM_START = frozenset({"sma"})

FeatureFn = Callable[[torch.Tensor], torch.Tensor]
PerSampleLoss = Callable[[torch.Tensor], torch.Tensor]


def paired_distance(first: torch.Tensor, second: torch.Tensor, distance: str) -> torch.Tensor:
    """Distance between row i of `first` and row i of `second` ([B, D] each -> [B])."""
    if distance == "cosine":
        return 1 - (F.normalize(first, dim=1) * F.normalize(second, dim=1)).sum(dim=1)
    return (first - second).norm(dim=1)


def self_metric_loss(features: FeatureFn, clean: torch.Tensor, distance: str) -> PerSampleLoss:
    """SMA: distance between the adversarial feature and the clean feature [B, D]."""
    return lambda images: paired_distance(features(images), clean, distance)


def opposite_direction_loss(features: FeatureFn, clean: torch.Tensor) -> PerSampleLoss:
    """ODFA: minus the squared distance between the adversarial feature and -clean."""
    return lambda images: -(features(images) + clean).pow(2).sum(dim=1)


def metric_attack_loss(
    features: FeatureFn, gallery: torch.Tensor, positives: torch.Tensor, distance: str
) -> PerSampleLoss:
    """Bai et al.: mean distance to the gallery features [G, D] marked in `positives` [B, G].

    A query without a true match gets a zero loss (and so no gradient): the ranking
    protocol skips it anyway.
    """
    counts = positives.sum(dim=1).clamp_min(1)
    weights = positives.to(gallery.dtype) / counts[:, None]
    return lambda images: (pairwise_distance(features(images), gallery, distance) * weights).sum(dim=1)


def true_matches(
    q_pids: torch.Tensor, q_camids: torch.Tensor, g_pids: torch.Tensor, g_camids: torch.Tensor
) -> torch.Tensor:
    """[Q, G] mask of each query's true matches: same person, another camera (the protocol's)."""
    return (q_pids[:, None] == g_pids[None, :]) & (q_camids[:, None] != g_camids[None, :])


def build_reid_loss(
    name: str,
    features: FeatureFn,
    *,
    clean: torch.Tensor,
    gallery: torch.Tensor,
    positives: torch.Tensor,
    distance: str,
) -> PerSampleLoss:
    """The loss `name` (one of REID_LOSSES) for a batch of queries."""
    if name == "sma":
        return self_metric_loss(features, clean, distance)
    if name == "odfa":
        return opposite_direction_loss(features, clean)
    if name == "metric":
        return metric_attack_loss(features, gallery, positives, distance)
    raise ValueError(f"unknown re-ID attack loss {name!r}; choose one of {REID_LOSSES}")
