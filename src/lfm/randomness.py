"""Randomness that is reproducible per seed, different across DDP ranks, and survives resume."""

import random

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class RandomStateCallback(Callback):
    """Seed each process at fit start and carry the random state through checkpoints.

    A fresh fit seeds torch and Python's `random` with `seed + global_rank`, so LFM's draws
    (and dropout's) are reproducible for a seed and differ across DDP ranks. Checkpoints store
    rank 0's random state; a fit resumed from one restores it at fit start (after Lightning
    restored the callbacks, before any data is drawn), so a resumed single-process run
    continues exactly as the uninterrupted run would. Other ranks continue from that state
    offset by their rank: reproducible, but not bit-identical to an uninterrupted DDP run.
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
        if rank > 0:
            offset = int(torch.randint(2**62, ()))
            torch.manual_seed(offset + rank)
            random.seed(offset + rank)
        self.restored = None

    def state_dict(self) -> dict:
        return {"torch": torch.get_rng_state(), "python": random.getstate()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.restored = state_dict
