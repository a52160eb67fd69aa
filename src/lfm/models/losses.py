"""Losses: the label-smoothing check of every task's cross-entropy, and re-ID's metric-learning loss."""

import torch
import torch.nn.functional as F

from lfm.errors import InputError


def check_label_smoothing(label_smoothing: float) -> None:
    """Refuse a `model.label_smoothing` outside [0, 1) (cross-entropy's range)."""
    if not 0.0 <= label_smoothing < 1.0:
        raise InputError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")


def batch_hard_triplet_loss(features: torch.Tensor, pids: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Triplet loss with the hardest positive and negative of each anchor in the batch.

    Euclidean distances; anchors without a positive or a negative in the batch are ignored
    (use the identity-balanced P x K sampler so every anchor has both).
    """
    distances = torch.cdist(features, features)
    same = pids[:, None] == pids[None, :]
    eye = torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    positives = same & ~eye
    hardest_positive = distances.masked_fill(~positives, float("-inf")).amax(dim=1)
    hardest_negative = distances.masked_fill(same, float("inf")).amin(dim=1)
    valid = positives.any(dim=1) & (~same).any(dim=1)
    losses = F.relu(hardest_positive - hardest_negative + margin)
    return torch.where(valid, losses, torch.zeros_like(losses)).sum() / valid.sum().clamp(min=1)
