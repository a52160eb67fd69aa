"""Randomness that is reproducible per seed, different across DDP ranks, and survives resume."""

import random

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


def derived_seed(*key: int) -> int:
    """A 63-bit seed for the random stream named by `key` (e.g. seed, epoch, stream id), from
    NumPy's SeedSequence: streams of nearby keys are unrelated, unlike `seed + epoch`."""
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> np.uint64(1))


class RandomStateCallback(Callback):
    """Seed each process at fit start and carry the random state through checkpoints.

    A fresh fit seeds torch and Python's `random` with `seed + global_rank`, so LFM's draws
    (and dropout's) are reproducible for a seed and differ across DDP ranks. Checkpoints store
    rank 0's random state; a fit resumed from one restores it at fit start (after Lightning
    restored the callbacks, before any data is drawn), so a resumed single-process run
    continues exactly as the uninterrupted run would. Other ranks continue from that state
    offset by their rank: reproducible, but not bit-identical to an uninterrupted DDP run.
    The CUDA generators' states travel with the CPU one where CUDA is initialised.
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed
        self.restored: dict | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rank = trainer.global_rank
        if self.restored is None:
            torch.manual_seed(self.seed + rank)
            random.seed(self.seed + rank)
            return
        torch.set_rng_state(self.restored["torch"])
        random.setstate(self.restored["python"])
        cuda_states = self.restored.get("cuda", [])
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        if rank > 0:
            offset = int(torch.randint(2**62, ()))
            torch.manual_seed(offset + rank)
            random.seed(offset + rank)
        self.restored = None

    def state_dict(self) -> dict:
        cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
        return {"torch": torch.get_rng_state(), "python": random.getstate(), "cuda": cuda_states}

    def load_state_dict(self, state_dict: dict) -> None:
        self.restored = state_dict
