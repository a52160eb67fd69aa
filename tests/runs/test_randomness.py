"""Seeding per rank, and the random state carried through checkpoints."""

import random
from types import SimpleNamespace

import torch

from lfm.masking import LocalFeatureMasking
from lfm.runs.randomness import RandomStateCallback


def masks_at_rank(seed: int, rank: int) -> torch.Tensor:
    RandomStateCallback(seed).on_fit_start(SimpleNamespace(global_rank=rank), None)
    return LocalFeatureMasking(p=1.0).train()(torch.ones(4, 8, 16, 8)) == 0


def test_lfm_draws_differ_across_ranks_and_repeat_for_a_seed():
    assert not torch.equal(masks_at_rank(0, rank=0), masks_at_rank(0, rank=1))
    assert torch.equal(masks_at_rank(0, rank=1), masks_at_rank(0, rank=1))
    assert not torch.equal(masks_at_rank(0, rank=0), masks_at_rank(1, rank=0))


def test_a_restored_state_continues_the_same_stream():
    torch.manual_seed(3)
    random.seed(3)
    saved = RandomStateCallback(0).state_dict()
    expected = (torch.rand(5), random.random())
    torch.manual_seed(99)
    callback = RandomStateCallback(0)
    callback.load_state_dict(saved)
    callback.on_fit_start(SimpleNamespace(global_rank=0), None)
    assert torch.equal(torch.rand(5), expected[0]) and random.random() == expected[1]


def test_other_ranks_continue_from_the_restored_state_offset_by_rank():
    saved = RandomStateCallback(0).state_dict()
    streams = []
    for rank in (1, 2, 1):
        callback = RandomStateCallback(0)
        callback.load_state_dict(saved)
        callback.on_fit_start(SimpleNamespace(global_rank=rank), None)
        streams.append(torch.rand(3))
    assert not torch.equal(streams[0], streams[1]) and torch.equal(streams[0], streams[2])
