"""Classification attack losses, one value per image (to maximise)."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

CLASSIFICATION_LOSSES = ("ce", "cw")

LogitsFn = Callable[[torch.Tensor], torch.Tensor]
PerSampleLoss = Callable[[torch.Tensor], torch.Tensor]


def cross_entropy_loss(logits: LogitsFn, labels: torch.Tensor) -> PerSampleLoss:
    return lambda images: F.cross_entropy(logits(images), labels, reduction="none")


def cw_margin_loss(logits: LogitsFn, labels: torch.Tensor) -> PerSampleLoss:
    """Carlini-Wagner margin: best other logit minus the true logit (> 0 once misclassified)."""

    def loss(images: torch.Tensor) -> torch.Tensor:
        scores = logits(images)
        true = scores.gather(1, labels[:, None]).squeeze(1)
        other = scores.masked_fill(F.one_hot(labels, scores.shape[1]).bool(), float("-inf")).amax(dim=1)
        return other - true

    return loss


def build_classification_loss(name: str, logits: LogitsFn, labels: torch.Tensor) -> PerSampleLoss:
    """The loss `name` (one of CLASSIFICATION_LOSSES) for a batch of labelled images."""
    if name == "ce":
        return cross_entropy_loss(logits, labels)
    if name == "cw":
        return cw_margin_loss(logits, labels)
    raise ValueError(f"unknown classification attack loss {name!r}; choose one of {CLASSIFICATION_LOSSES}")
