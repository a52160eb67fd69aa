"""Samples seen more than once: a DistributedSampler pads each rank's share by repeating samples."""

import torch


def first_occurrence(index: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each distinct dataset index, ordered by index: the
    dataset's order whatever the ranks' interleaving, so sums match one process bit for bit."""
    unique, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(index.numel(), device=index.device)
    return torch.full_like(unique, index.numel()).scatter_reduce_(0, inverse, positions, reduce="amin")
