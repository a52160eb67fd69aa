"""Image transforms for re-ID: PIL image -> float tensor in [0, 1] (normalisation is in the model)."""

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.transforms import v2

from lfm.data.augment import CutoutSettings, RandomErasingSettings

# How every image is brought to `data.image_size` (part of the decoded-image cache's key).
RESIZE = {"interpolation": v2.InterpolationMode.BICUBIC, "antialias": True}


class Cutout(nn.Module):
    """Cutout on one [C, H, W] tensor image (see lfm.data.augment.CutoutSettings)."""

    def __init__(self, p: float = 0.5, size: float = 0.5):
        super().__init__()
        self.settings = CutoutSettings(p, size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.settings.p:
            return image
        height, width = image.shape[-2:]
        side = max(1, round(self.settings.size * min(height, width)))
        centre_y, centre_x = torch.randint(height, ()).item(), torch.randint(width, ()).item()
        top, left = max(0, centre_y - side // 2), max(0, centre_x - side // 2)
        image = image.clone()
        image[..., top : centre_y - side // 2 + side, left : centre_x - side // 2 + side] = 0
        return image


def random_erasing(settings: RandomErasingSettings) -> v2.RandomErasing:
    """torchvision's Random Erasing with these settings."""
    return v2.RandomErasing(p=settings.p, scale=settings.scale, ratio=settings.ratio, value=settings.value)


def train_transform(
    image_size: Sequence[int],
    pad: int = 10,
    flip: bool = True,
    random_erasing_settings: RandomErasingSettings | None = None,
    cutout_settings: CutoutSettings | None = None,
):
    """Resize, pad + random crop, horizontal flip (the layumi / torchreid recipe), then the
    optional input regularizers: Random Erasing and Cutout."""
    steps = [resize_transform(image_size)]
    if pad > 0:
        steps += [v2.Pad(pad), v2.RandomCrop(tuple(image_size))]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if random_erasing_settings is not None:
        steps.append(random_erasing(random_erasing_settings))
    if cutout_settings is not None:
        steps.append(Cutout(cutout_settings.p, cutout_settings.size))
    return v2.Compose(steps)


def resize_transform(image_size: Sequence[int]):
    """PIL image -> uint8 tensor [3, H, W] at `image_size` (bicubic, antialiased): what the
    decoded-image cache stores."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(tuple(image_size), interpolation=RESIZE["interpolation"], antialias=RESIZE["antialias"]),
        ]
    )


def eval_transform(image_size: Sequence[int]):
    """Resize only: the exact input of the evaluation pipeline."""
    return v2.Compose([resize_transform(image_size), v2.ToDtype(torch.float32, scale=True)])
