"""A lab's own methods, in a module outside the package (on PYTHONPATH): what docs/extend.md builds.

Used by the tests as a user would use them, by import path in config (`_target_`).
"""

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn


class ChannelNoise(nn.Module):
    """Feature regularizer: multiplicative Gaussian noise, one factor per sample and channel,
    N(1, std^2), in training; the identity in evaluation."""

    def __init__(self, std: float = 0.5):
        super().__init__()
        if std < 0:
            raise ValueError(f"std must be >= 0, got {std}")
        self.std = std
        self.calls = 0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training or self.std == 0:
            return features
        self.calls += 1
        noise = 1 + self.std * torch.randn(*features.shape[:2], 1, 1, device=features.device, dtype=features.dtype)
        return features * noise


def channel_noise(std: float = 0.5) -> nn.Module:
    """The same regularizer from a factory function."""
    return ChannelNoise(std)


class TinyConvNet(nn.Module):
    """A backbone no library has: images [B, 3, H, W] -> [B, width * 2, H / 4, W / 4]."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.stage1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stage2(self.stage1(self.stem(images)))


class EpochCounter(Callback):
    """A callback that counts the training epochs it saw (in `epochs`)."""

    def __init__(self, start: int = 0):
        super().__init__()
        self.epochs = start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs += 1
