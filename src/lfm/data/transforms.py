"""Image transforms for re-ID: PIL image -> float tensor in [0, 1] (normalisation is in the model)."""

from collections.abc import Sequence

import torch
from torchvision.transforms import v2


def train_transform(image_size: Sequence[int], pad: int = 10, flip: bool = True):
    """Resize, pad + random crop, horizontal flip (the layumi / torchreid recipe)."""
    size = tuple(image_size)
    steps = [v2.ToImage(), v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)]
    if pad > 0:
        steps += [v2.Pad(pad), v2.RandomCrop(size)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


def eval_transform(image_size: Sequence[int]):
    """Resize only: the exact input of the evaluation pipeline."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(tuple(image_size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.ToDtype(torch.float32, scale=True),
    ])
