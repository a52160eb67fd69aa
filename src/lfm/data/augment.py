"""Training augmentation of whole uint8 batches on their device (the tensor pipeline).

Each function draws from an explicit `generator` on the batch's device and reproduces the
distribution of the per-image torchvision transform of the PIL pipeline (lfm.data.transforms):
pad + random crop (`v2.Pad` + `v2.RandomCrop`), horizontal flip, `v2.RandomErasing` and
Cutout. The first two act on uint8 images; erasing and Cutout on the float images in [0, 1].
A user's batch transforms (`data.batch_transforms`) come last, called as `transform(images, generator)`.
"""

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from lfm.errors import InputError
from lfm.targets import TARGET_KEY, build

# A user's batch transform: float batch [B, C, H, W] in [0, 1] and the augmentation's generator -> the batch
BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class RandomErasingSettings:
    """Random Erasing (Zhong et al., 2017) as torchvision does it: with probability `p`, up to
    10 tries to draw a rectangle of area fraction in `scale` and log-uniform aspect in `ratio`
    that fits; it is filled with `value` (one number, one per channel, or "random": N(0, 1))."""

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.4)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float | tuple[float, ...] | str = 0.0

    @classmethod
    def from_config(cls, settings: Mapping) -> "RandomErasingSettings":
        """Checked settings from `data.random_erasing` (p, scale, ratio, value)."""
        unknown = set(settings) - {"p", "scale", "ratio", "value"}
        if unknown:
            raise InputError(f"data.random_erasing has unknown keys {sorted(unknown)}; use p, scale, ratio, value")
        defaults = cls()
        p = settings.get("p", defaults.p)
        scale, ratio = tuple(settings.get("scale", defaults.scale)), tuple(settings.get("ratio", defaults.ratio))
        value = settings.get("value", defaults.value)
        if not 0.0 <= p <= 1.0:
            raise InputError(f"data.random_erasing.p must be in [0, 1], got {p}")
        for key, (low, high) in (("scale", scale), ("ratio", ratio)):
            if not 0 < low <= high:
                raise InputError(f"data.random_erasing.{key} must be [min, max] with 0 < min <= max, got {[low, high]}")
        if scale[1] > 1:
            raise InputError(f"data.random_erasing.scale must lie in (0, 1], got {list(scale)}")
        if isinstance(value, str):
            if value != "random":
                raise InputError(
                    f"data.random_erasing.value must be a number, one per channel, or 'random'; got {value!r}"
                )
        elif isinstance(value, (int, float)):
            value = float(value)
        else:
            value = tuple(float(v) for v in value)
            if len(value) not in (1, 3):
                raise InputError(f"data.random_erasing.value needs 1 or 3 numbers (one per channel), got {list(value)}")
        return cls(p=p, scale=scale, ratio=ratio, value=value)


@dataclass(frozen=True)
class CutoutSettings:
    """Cutout (DeVries & Taylor, 2017): with probability `p`, zero one square of side `size`
    x the shorter image side, centred uniformly over the image and clipped at its borders."""

    p: float = 0.5
    size: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise InputError(f"data.cutout.p must be in [0, 1], got {self.p}")
        if not 0.0 < self.size <= 1.0:
            raise InputError(
                f"data.cutout.size (a fraction of the shorter image side) must be in (0, 1], got {self.size}"
            )

    @classmethod
    def from_config(cls, settings: Mapping) -> "CutoutSettings":
        try:
            return cls(**settings)
        except TypeError:
            raise InputError(
                f"data.cutout has unknown keys {sorted(set(settings) - {'p', 'size'})}; use p, size"
            ) from None


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1], with the arithmetic of torchvision's ToDtype(scale=True)."""
    return images.to(torch.float32).mul_(1.0 / 255)


def batch_crop_flip(images: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad each image by `pad`, crop it back to its size at a uniform offset, and mirror it
    with probability 1/2 (if `flip`). uint8 or float [B, C, H, W] in and out."""
    batch, device = images.shape[0], images.device
    top = torch.randint(0, 2 * pad + 1, (batch,), device=device, generator=generator) - pad
    left = torch.randint(0, 2 * pad + 1, (batch,), device=device, generator=generator) - pad
    mirrored = (
        (torch.rand(batch, device=device, generator=generator) < 0.5)
        if flip
        else torch.zeros_like(top, dtype=torch.bool)
    )
    if device.type == "cpu":
        return crop_flip_by_slices(images, top, left, mirrored)
    return crop_flip_by_gather(images, top, left, mirrored)


def crop_flip_by_gather(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, mirrored: torch.Tensor
) -> torch.Tensor:
    """Image b shifted by (top[b], left[b]) with zeros shifted in, mirrored where `mirrored`:
    one gather, no host-device synchronisation (the accelerator path)."""
    batch, channels, height, width = images.shape
    rows = top[:, None] + torch.arange(height, device=images.device)
    columns = left[:, None] + torch.arange(width, device=images.device)
    columns = torch.where(mirrored[:, None], columns.flip(1), columns)
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((columns >= 0) & (columns < width))[:, None, :]
    source = rows.clamp(0, height - 1)[:, :, None] * width + columns.clamp(0, width - 1)[:, None, :]
    gathered = images.reshape(batch, channels, height * width).gather(
        2, source.reshape(batch, 1, height * width).expand(batch, channels, height * width)
    )
    return gathered.reshape(batch, channels, height, width).masked_fill_(~inside[:, None], 0)


def crop_flip_by_slices(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, mirrored: torch.Tensor
) -> torch.Tensor:
    """The same as `crop_flip_by_gather` by one slice copy per image: several times faster on a
    CPU, where reading the offsets costs nothing."""
    height, width = images.shape[-2:]
    output = torch.zeros_like(images)
    for image, target, dy, dx, mirror in zip(images, output, top.tolist(), left.tolist(), mirrored.tolist()):
        rows = slice(max(0, -dy), min(height, height - dy))
        first, last = max(0, -dx), min(width, width - dx)  # the output columns the shifted image covers
        source = image[:, rows.start + dy : rows.stop + dy, first + dx : last + dx]
        if mirror:
            target[:, rows, width - last : width - first] = source.flip(-1)
        else:
            target[:, rows, first:last] = source
    return output


def batch_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image with probability 1/2."""
    mirrored = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(mirrored[:, None, None, None], images.flip(-1), images)


def _box_mask(
    top: torch.Tensor, left: torch.Tensor, bottom: torch.Tensor, right: torch.Tensor, height: int, width: int
):
    """[B, 1, H, W] bool: rows in [top, bottom) and columns in [left, right) of each image."""
    rows = torch.arange(height, device=top.device)
    columns = torch.arange(width, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])
    in_columns = (columns >= left[:, None]) & (columns < right[:, None])
    return (in_rows[:, :, None] & in_columns[:, None, :])[:, None]


def batch_random_erasing(
    images: torch.Tensor, settings: RandomErasingSettings, generator: torch.Generator
) -> torch.Tensor:
    """torchvision's RandomErasing, drawn for every image of a float batch at once."""
    batch, _, height, width = images.shape
    device = images.device
    tries = 10
    applied = torch.rand(batch, device=device, generator=generator) < settings.p
    area = height * width * torch.empty(batch, tries, device=device).uniform_(*settings.scale, generator=generator)
    log_ratio = (math.log(settings.ratio[0]), math.log(settings.ratio[1]))
    aspect = torch.exp(torch.empty(batch, tries, device=device).uniform_(*log_ratio, generator=generator))
    box_height = torch.round(torch.sqrt(area * aspect)).long()
    box_width = torch.round(torch.sqrt(area / aspect)).long()
    fits = (box_height < height) & (box_width < width)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
    applied &= fits.any(dim=1)
    box_height, box_width = box_height.gather(1, first)[:, 0], box_width.gather(1, first)[:, 0]
    # randint(0, n) for each image's own n = H - h + 1: floor of a uniform draw times n
    top = (torch.rand(batch, device=device, generator=generator) * (height - box_height + 1)).long()
    left = (torch.rand(batch, device=device, generator=generator) * (width - box_width + 1)).long()
    erase = _box_mask(top, left, top + box_height, left + box_width, height, width) & applied[:, None, None, None]
    if settings.value == "random":
        fill = torch.randn(images.shape, device=device, generator=generator, dtype=images.dtype)
    else:
        value = settings.value if isinstance(settings.value, tuple) else (settings.value,)
        fill = torch.tensor(value, device=device, dtype=images.dtype).view(1, -1, 1, 1).expand_as(images)
    return torch.where(erase, fill, images)


def batch_cutout(images: torch.Tensor, settings: CutoutSettings, generator: torch.Generator) -> torch.Tensor:
    """Cutout for every image of a batch at once (the same squares as lfm.data.transforms.Cutout)."""
    batch, _, height, width = images.shape
    device = images.device
    applied = torch.rand(batch, device=device, generator=generator) < settings.p
    side = max(1, round(settings.size * min(height, width)))
    centre_y = torch.randint(height, (batch,), device=device, generator=generator)
    centre_x = torch.randint(width, (batch,), device=device, generator=generator)
    top, left = centre_y - side // 2, centre_x - side // 2
    cut = _box_mask(top, left, top + side, left + side, height, width) & applied[:, None, None, None]
    return images.masked_fill(cut, 0)


def build_batch_transforms(entries: Mapping | None) -> dict[str, BatchTransform]:
    """The transforms of `data.batch_transforms` ({label: {_target_: import path, its keyword
    arguments}}), built in the mapping's order by lfm.targets.build; null entries are off."""
    if entries is None:
        return {}
    if not isinstance(entries, Mapping):
        raise InputError(
            f"data.batch_transforms must map labels to {{{TARGET_KEY}: import path, ...}} entries, got {entries!r}"
        )
    transforms = {}
    for label, entry in entries.items():
        if entry is not None:
            transforms[label] = _checked_transform(build(entry, f"data.batch_transforms.{label}"), label, entry)
    return transforms


def _checked_transform(transform, label: str, entry: Mapping) -> BatchTransform:
    """`transform` if it can be called as transform(images, generator)."""
    where = f"data.batch_transforms.{label}: {entry[TARGET_KEY]} built a {type(transform).__name__}"
    if not callable(transform):
        raise InputError(f"{where}, which cannot be called; build an object called as transform(images, generator)")
    try:
        signature = inspect.signature(transform)
    except (TypeError, ValueError):  # some builtins have no signature: the first batch checks
        return transform
    try:
        signature.bind(None, None)
    except TypeError:
        raise InputError(
            f"{where} that takes ({', '.join(signature.parameters)}); it is called as transform(images, generator)"
        ) from None
    return transform


def apply_batch_transforms(
    transforms: Mapping[str, BatchTransform], images: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Each transform in turn on the float batch, each given `generator`; each must return the batch."""
    for label, transform in transforms.items():
        output = transform(images, generator)
        if not isinstance(output, torch.Tensor) or output.shape != images.shape:
            got = f"shape {list(output.shape)}" if isinstance(output, torch.Tensor) else f"a {type(output).__name__}"
            raise InputError(
                f"data.batch_transforms.{label} returned {got}; return the batch (a tensor of its shape "
                f"{list(images.shape)})"
            )
        images = output
    return images


class BatchAugmentation:
    """The training augmentation of the tensor pipeline: uint8 batch in, float batch in [0, 1] out.

    Pad + random crop and flip (as the PIL pipeline's `v2.Pad`, `v2.RandomCrop`,
    `v2.RandomHorizontalFlip`), conversion to float, then Random Erasing and Cutout if set, then
    the `batch_transforms` (see build_batch_transforms) in order, all from one generator.
    """

    def __init__(
        self,
        pad: int = 0,
        flip: bool = True,
        random_erasing: RandomErasingSettings | None = None,
        cutout: CutoutSettings | None = None,
        batch_transforms: Mapping[str, BatchTransform] | None = None,
    ):
        if pad < 0:
            raise InputError(f"data.pad must be >= 0, got {pad}")
        self.pad, self.flip, self.random_erasing, self.cutout = pad, flip, random_erasing, cutout
        self.batch_transforms = dict(batch_transforms or {})

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.pad > 0:
            images = batch_crop_flip(images, self.pad, self.flip, generator)
        elif self.flip:
            images = batch_flip(images, generator)
        images = to_float(images)
        if self.random_erasing is not None:
            images = batch_random_erasing(images, self.random_erasing, generator)
        if self.cutout is not None:
            images = batch_cutout(images, self.cutout, generator)
        return apply_batch_transforms(self.batch_transforms, images, generator)
