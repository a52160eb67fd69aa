"""Top-1 accuracy counted once per dataset sample, across batches and DDP ranks."""

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lfm.metrics.samples import first_occurrence


class SampleAccuracy(Metric):
    """Fraction of samples classified correctly; ``index`` (each sample's dataset index) drops the
    duplicates a DistributedSampler adds by padding, so DDP gives the single-process accuracy."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> None:
        """Add a batch: logits [N, C], labels [N], index [N]."""
        if logits.ndim != 2 or labels.shape != (logits.shape[0],) or index.shape != (logits.shape[0],):
            raise ValueError(
                f"expected logits [N, C], labels [N], index [N]; got shapes {tuple(logits.shape)}, "
                f"{tuple(labels.shape)}, {tuple(index.shape)}"
            )
        self.correct.append(logits.argmax(dim=1) == labels)
        self.index.append(index.to(torch.int64))

    def compute(self) -> float:
        if len(self.index) == 0:
            raise ValueError("SampleAccuracy.compute() called before any update()")
        correct = dim_zero_cat(self.correct)[first_occurrence(dim_zero_cat(self.index))]
        return int(correct.sum()) / len(correct)  # exact: the same float as any count / total
