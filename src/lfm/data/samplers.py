"""Identity-balanced P x K sampling for metric-learning losses."""

from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class IdentityBalancedSampler(Sampler[int]):
    """Yields indices in groups of `num_instances` images of one identity.

    With a batch size that is a multiple of `num_instances`, each batch holds P identities
    x K images (K = num_instances). Identities with fewer than K images are sampled with
    replacement. One epoch visits every identity about len(labels) / (K * num_ids) times.
    Call `set_epoch` (Lightning does) for a new, reproducible order each epoch.
    """

    def __init__(self, labels: Sequence[int], num_instances: int, seed: int = 0):
        if num_instances < 1:
            raise ValueError(f"num_instances must be >= 1, got {num_instances}")
        self.num_instances = num_instances
        self.seed = seed
        self.epoch = 0
        by_label: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            by_label[label].append(index)
        self.indices_by_label = [torch.tensor(indices) for _, indices in sorted(by_label.items())]
        self.groups_per_epoch = max(1, len(labels) // num_instances)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.groups_per_epoch * self.num_instances

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        num_labels = len(self.indices_by_label)
        rounds = -(-self.groups_per_epoch // num_labels)
        label_order = torch.cat([torch.randperm(num_labels, generator=generator) for _ in range(rounds)])
        for label in label_order[: self.groups_per_epoch].tolist():
            indices = self.indices_by_label[label]
            if len(indices) >= self.num_instances:
                picks = torch.randperm(len(indices), generator=generator)[: self.num_instances]
            else:
                picks = torch.randint(len(indices), (self.num_instances,), generator=generator)
            yield from indices[picks].tolist()
