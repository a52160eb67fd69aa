"""Image transforms for re-ID: PIL image -> float tensor in [0, 1] (normalisation is in the model)."""

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torchvision.transforms import v2

from lfm.errors import InputError


class Cutout(nn.Module):
    """With probability `p`, zero one square of side `size` x the shorter image side.

    The square's centre is uniform over the image and the square is clipped at the borders
    (DeVries & Taylor, 2017). Input: a [C, H, W] tensor.
    """

    def __init__(self, p: float = 0.5, size: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise InputError(f"data.cutout.p must be in [0, 1], got {p}")
        if not 0.0 < size <= 1.0:
            raise InputError(f"data.cutout.size (a fraction of the shorter image side) must be in (0, 1], got {size}")
        self.p, self.size = p, size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return image
        height, width = image.shape[-2:]
        side = max(1, round(self.size * min(height, width)))
        centre_y, centre_x = torch.randint(height, ()).item(), torch.randint(width, ()).item()
        top, left = max(0, centre_y - side // 2), max(0, centre_x - side // 2)
        image = image.clone()
        image[..., top:centre_y - side // 2 + side, left:centre_x - side // 2 + side] = 0
        return image


def random_erasing(settings: Mapping) -> v2.RandomErasing:
    """torchvision's Random Erasing from `data.random_erasing` (p, scale, ratio, value)."""
    scale, ratio = tuple(settings.get("scale", (0.02, 0.4))), tuple(settings.get("ratio", (0.3, 3.3)))
    for key, (low, high) in (("scale", scale), ("ratio", ratio)):
        if not 0 < low <= high:
            raise InputError(f"data.random_erasing.{key} must be [min, max] with 0 < min <= max, got {[low, high]}")
    try:
        return v2.RandomErasing(p=settings.get("p", 0.5), scale=scale, ratio=ratio, value=settings.get("value", 0))
    except (TypeError, ValueError) as error:
        raise InputError(f"invalid data.random_erasing setting: {error}") from None


def train_transform(
    image_size: Sequence[int],
    pad: int = 10,
    flip: bool = True,
    random_erasing_settings: Mapping | None = None,
    cutout_settings: Mapping | None = None,
):
    """Resize, pad + random crop, horizontal flip (the layumi / torchreid recipe), then the
    optional input regularizers: Random Erasing and Cutout."""
    size = tuple(image_size)
    steps = [v2.ToImage(), v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)]
    if pad > 0:
        steps += [v2.Pad(pad), v2.RandomCrop(size)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if random_erasing_settings is not None:
        steps.append(random_erasing(random_erasing_settings))
    if cutout_settings is not None:
        steps.append(Cutout(**cutout_settings))
    return v2.Compose(steps)


def eval_transform(image_size: Sequence[int]):
    """Resize only: the exact input of the evaluation pipeline."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(tuple(image_size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.ToDtype(torch.float32, scale=True),
    ])
