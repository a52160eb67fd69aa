import pytest
import torch
from torchmetrics.utilities import dim_zero_cat

from lfm.metrics.classification import SampleAccuracy


def predictions(num: int = 50, classes: int = 4):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(num, classes, generator=generator)
    labels = torch.randint(0, classes, (num,), generator=generator)
    return logits, labels, torch.arange(num)


def test_accuracy_over_batches():
    logits, labels, index = predictions()
    metric = SampleAccuracy()
    for batch in index.split(16):
        metric.update(logits[batch], labels[batch], index[batch])
    assert metric.compute() == pytest.approx(float((logits.argmax(1) == labels).float().mean()))


def test_ddp_padding_duplicates_are_counted_once():
    logits, labels, index = predictions()
    # Two ranks, DistributedSampler style: interleaved samples, padded by repeating the first ones.
    padded = torch.cat([index, index[:2]])
    other_rank, other_states = SampleAccuracy(), []

    def all_gather(tensor, group=None):
        return [tensor, other_states.pop(0)]

    this_rank = SampleAccuracy(dist_sync_fn=all_gather, distributed_available_fn=lambda: True)
    for rank, metric in enumerate([this_rank, other_rank]):
        for batch in padded[rank::2].split(8):
            metric.update(logits[batch], labels[batch], index[batch])
    other_states.extend(dim_zero_cat(getattr(other_rank, name)) for name in ("correct", "index"))
    correct = (logits.argmax(1) == labels).float()
    assert correct[padded].mean() != pytest.approx(correct.mean())
    assert this_rank.compute() == pytest.approx(float(correct.mean()))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="expected logits"):
        SampleAccuracy().update(torch.randn(4, 3), torch.zeros(5, dtype=torch.long), torch.arange(4))
