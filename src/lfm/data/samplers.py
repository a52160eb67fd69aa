"""Epoch orders as tensor index ops: a random permutation, and identity-balanced P x K groups.

Each order is a pure function of (seed, epoch), so a resumed run replays the same epochs and
every DDP rank computes the same global order before taking its share.
"""

from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from lfm.runs.randomness import derived_seed

ORDER_STREAM = 1


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of one epoch's order."""
    return torch.Generator().manual_seed(derived_seed(seed, epoch, ORDER_STREAM))


class RandomOrder:
    """A uniformly random permutation of `size` positions each epoch."""

    def __init__(self, size: int, seed: int = 0):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def positions(self) -> torch.Tensor:
        return torch.randperm(self.size, generator=epoch_generator(self.seed, self.epoch))


class SequentialOrder:
    """Positions 0 .. size - 1, every epoch (evaluation)."""

    def __init__(self, size: int):
        self.size = size

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return self.size

    def positions(self) -> torch.Tensor:
        return torch.arange(self.size)


class IdentityBalancedOrder:
    """Groups of `num_instances` (K) positions of one identity, identities in random order.

    With a batch size that is a multiple of K, each batch holds P identities x K images.
    Identities with fewer than K images are sampled with replacement. One epoch has
    len(labels) // K groups and visits every identity about that many / num_ids times.
    """

    def __init__(self, labels: Sequence[int], num_instances: int, seed: int = 0):
        if num_instances < 1:
            raise ValueError(f"num_instances must be >= 1, got {num_instances}")
        self.num_instances, self.seed, self.epoch = num_instances, seed, 0
        by_label: dict[int, list[int]] = defaultdict(list)
        for position, label in enumerate(labels):
            by_label[label].append(position)
        groups = [torch.tensor(positions) for _, positions in sorted(by_label.items())]
        self.counts = torch.tensor([len(group) for group in groups])
        self.table = torch.nn.utils.rnn.pad_sequence(groups, batch_first=True, padding_value=-1)
        self.num_groups = max(1, len(labels) // num_instances)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_groups * self.num_instances

    def positions(self) -> torch.Tensor:
        generator = epoch_generator(self.seed, self.epoch)
        num_labels, k = len(self.counts), self.num_instances
        rounds = -(-self.num_groups // num_labels)
        labels = torch.cat([torch.randperm(num_labels, generator=generator) for _ in range(rounds)])[: self.num_groups]
        counts = self.counts[labels, None]
        # Without replacement: the K smallest of uniform keys over an identity's images are a
        # uniform random K-subset in random order; padding slots get keys above every real one.
        keys = torch.rand(self.num_groups, self.table.shape[1], generator=generator)
        keys.masked_fill_(torch.arange(self.table.shape[1]) >= counts, 2.0)
        without_replacement = keys.argsort(dim=1)[:, :k] if self.table.shape[1] >= k else None
        with_replacement = (torch.rand(self.num_groups, k, generator=generator) * counts).long()
        slots = (
            with_replacement
            if without_replacement is None
            else torch.where(counts >= k, without_replacement, with_replacement)
        )
        return self.table[labels[:, None], slots].reshape(-1)


class IdentityBalancedSampler(Sampler[int]):
    """The identity-balanced order as a DataLoader sampler (the PIL pipeline).

    Call `set_epoch` (Lightning does) for a new, reproducible order each epoch.
    """

    def __init__(self, labels: Sequence[int], num_instances: int, seed: int = 0):
        self.order = IdentityBalancedOrder(labels, num_instances, seed)

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[int]:
        yield from self.order.positions().tolist()
