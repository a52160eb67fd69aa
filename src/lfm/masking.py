"""Local Feature Masking (LFM): mask random rectangles of random channels of a feature map.

LFM (Gong et al., "Beyond Dropout", IJCNN 2024) is a training-time regularizer applied to
a shallow feature map x of shape [B, C, H, W] (the paper: the output of conv1 of a
ResNet-50). It has three sources of randomness:

1. sample: each sample is masked with probability `p` (`selection="sample"`), or one draw
   decides for the whole batch (`selection="batch"`, as in the authors' code; the channel
   subset is then shared by the batch too);
2. channel: a masked sample gets k = round(mask_ratio * C) channel draws (rounded half up),
   either k distinct channels (`channel_sampling="without_replacement"`) or k independent
   draws with replacement (`"with_replacement"`, as in the authors' code: fewer distinct
   channels, and a channel drawn twice gets the union of its two regions);
3. region: every draw gets its own region, sampled like Random Erasing: area fraction
   a ~ U(area) of H * W, aspect ratio h / w log-uniform in `aspect` (intersected with the
   ratios for which the rectangle fits, so no rejection loop is needed), position uniform
   with the rectangle fully inside the map.

Masked positions are replaced by a fill value: zero, one uniform [0, 1) value per region
("random", the authors' choice), the per-sample per-channel spatial mean ("mean"), or
Gaussian noise with that mean and standard deviation ("gaussian"). The layer is the
identity in evaluation mode.

Defaults follow the paper. The released code (finger-monkey/beyond_dropout, model.py)
differs: one Bernoulli(0.15) draw per batch; 32 of 64 channels drawn with replacement and
shared by the batch; only the first 8 samples touched; a rejection sampler with uniform
aspect ratio; a random [0, 1) fill per region, written in place and also at evaluation; and
an indexing bug, `x[i][c][y1:y1 + h][x1:x1 + w]`, that slices the row axis twice. There
`x1` is the row offset and `y1` the column offset, so the masked area is the full-width
band of rows [y1 + x1, min(y1 + h, y1 + x1 + w)): empty whenever x1 >= h, about 12.5% of
the map on average instead of about 20% (with this module's log-uniform aspect sampler:
about 11% and 21%). `region="band"` reproduces that band on purpose. The per-batch draw,
the channel draws with replacement and the random fill are settings too (`p` is the
caller's: 0.15 in the released code). Not reproduced: the 8-sample limit, masking at
evaluation, the in-place write, the rejection sampler, and the released code's
last-write-wins where two regions of one channel overlap (here: the mean of their values).
"""

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

FILLS = ("zero", "random", "mean", "gaussian")
SELECTIONS = ("sample", "batch")
CHANNEL_SAMPLINGS = ("without_replacement", "with_replacement")
REGIONS = ("rectangle", "band")

DEFAULT_AREA = (0.02, 0.4)
DEFAULT_ASPECT = (0.3, 1 / 0.3)


class _Draws(NamedTuple):
    """The regions of one batch of masks, one per (sample, draw)."""

    masks: Tensor  # uint8 0/1 [B, K, H, W] (W = 1 for bands); 0 for unselected samples
    channels: Tensor | None  # [B, K] channel of each draw; None when draw k is channel k


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_pair(
    name: str, value: Sequence[float], rule: str, valid: Callable[[float, float], bool]
) -> tuple[float, float]:
    shape_error = f"{name} must be a sequence of two numbers (min, max), got {value!r}"
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(shape_error)
    try:
        low, high = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ValueError(shape_error) from None
    if not valid(low, high):
        raise ValueError(f"{name} must satisfy {rule}, got {tuple(value)!r}")
    return low, high


@dataclasses.dataclass(frozen=True)
class MaskingSettings:
    """The settings of one LFM op or layer (see the module docstring), checked when made (the
    defaults are in the signatures of the op and the layer).

    Raises ValueError on a bad setting; `area` and `aspect` take any sequence of two numbers
    and hold them as a float pair.
    """

    p: float
    mask_ratio: float
    area: tuple[float, float]
    aspect: tuple[float, float]
    fill: str
    selection: str
    channel_sampling: str
    region: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {self.p!r}")
        if not 0.0 <= self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1], got {self.mask_ratio!r}")
        area = _check_pair("area", self.area, "0 < area[0] <= area[1] <= 1", lambda low, high: 0 < low <= high <= 1)
        aspect = _check_pair("aspect", self.aspect, "0 < aspect[0] <= aspect[1]", lambda low, high: 0 < low <= high)
        object.__setattr__(self, "area", area)  # frozen: the checked pairs replace what was given
        object.__setattr__(self, "aspect", aspect)
        _check_choice("selection", self.selection, SELECTIONS)
        _check_choice("channel_sampling", self.channel_sampling, CHANNEL_SAMPLINGS)
        _check_choice("region", self.region, REGIONS)
        _check_choice("fill", self.fill, FILLS)


def num_masked_channels(mask_ratio: float, channels: int) -> int:
    """k = mask_ratio x C rounded half up (unlike Python's round): channel draws per masked sample."""
    return math.floor(mask_ratio * channels + 0.5)


def _memory_format(t: Tensor) -> torch.memory_format:
    if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _boxes(
    u: Tensor, height: int, width: int, area: tuple[float, float], aspect: tuple[float, float]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Rectangles (y0, h, x0, w) fully inside the map, from uniforms u of shape [4, ...]."""
    fraction = area[0] + (area[1] - area[0]) * u[0]
    # Ratios h / w for which an a * H * W rectangle fits: h <= H needs r <= H / (a * W),
    # w <= W needs r >= a * H / W. Clamping both ends of `aspect` into that interval samples
    # their intersection exactly, or its nearest end when the two do not meet.
    fit_low = torch.log(fraction * (height / width))
    fit_high = torch.log((height / width) / fraction)
    low = torch.minimum(fit_low.clamp(min=math.log(aspect[0])), fit_high)
    high = torch.minimum(fit_low.clamp(min=math.log(aspect[1])), fit_high)
    ratio = torch.exp(low + (high - low) * u[1])
    target = fraction * (height * width)
    h = torch.round(torch.sqrt(target * ratio)).clamp(1, height).long()
    w = torch.round(torch.sqrt(target / ratio)).clamp(1, width).long()
    y0 = torch.minimum(torch.floor(u[2] * (height - h + 1)).long(), height - h)
    x0 = torch.minimum(torch.floor(u[3] * (width - w + 1)).long(), width - w)
    return y0, h, x0, w


def _draw_regions(
    shape: Sequence[int],
    settings: MaskingSettings,
    device: torch.device | str | None,
    generator: torch.Generator | None,
    memory_format: torch.memory_format,
) -> _Draws:
    batch, channels, height, width = shape
    region = settings.region
    groups = 1 if settings.selection == "batch" else batch
    selected = (torch.rand(groups, device=device, generator=generator) < settings.p).expand(batch)
    k = num_masked_channels(settings.mask_ratio, channels)
    if settings.channel_sampling == "without_replacement":
        scores = torch.rand(groups, channels, device=device, generator=generator)
        chosen = torch.zeros(groups, channels, dtype=torch.bool, device=device)
        chosen.scatter_(1, scores.topk(k, dim=1).indices, True)
        active = chosen.expand(batch, channels) & selected[:, None]
        draw_channels = None
    else:
        draw_channels = torch.randint(channels, (groups, k), device=device, generator=generator)
        draw_channels = draw_channels.expand(batch, k)
        active = selected[:, None].expand(batch, k)
    num = active.shape[1]
    u = torch.rand(4, batch, num, device=device, generator=generator)
    y0, h, x0, w = _boxes(u, height, width, settings.area, settings.aspect)
    if region == "band":
        # The authors' x[i][c][y1:y1 + h][x1:x1 + w], with x1 = y0 the row offset and
        # y1 = x0 the column offset: the second slice cuts rows of the first one.
        start = torch.stack([x0 + y0, torch.zeros_like(x0)], dim=-1)
        stop = torch.stack([torch.minimum(x0 + h, x0 + y0 + w), torch.full_like(x0, width)], -1)
    else:
        start = torch.stack([y0, x0], dim=-1)
        stop = torch.stack([y0 + h, x0 + w], dim=-1)
    stop = torch.where(active[..., None], stop, start)  # inactive draws: empty intervals
    # Rows and columns inside each interval, [B, K, 2, max(H, W)], in as few whole-tensor
    # ops as possible: on a busy CPU every multi-threaded op can cost a scheduler tick.
    positions = torch.arange(max(height, width), device=device)
    inside = ((positions >= start[..., None]) & (positions < stop[..., None])).view(torch.uint8)
    # Bands do not depend on the column: build (and merge) them at width 1 and let the
    # final torch.where broadcast them. One pass over the map otherwise, in uint8: torch's
    # vectorised kernels for uint8 are an order of magnitude faster on CPU than bool ones.
    mask_width = 1 if region == "band" else width
    masks = torch.empty(
        (batch, num, height, mask_width),
        dtype=torch.uint8,
        device=device,
        memory_format=memory_format,
    )
    torch.bitwise_and(inside[:, :, 0, :height, None], inside[:, :, 1, None, :mask_width], out=masks)
    return _Draws(masks, draw_channels)


def _sum_per_channel(draws: _Draws, values: Tensor, num_channels: int) -> Tensor:
    """Sum `values` [B, K, H, W] of the draws into their channels: [B, C, H, W]."""
    batch, _, height, width = values.shape
    out = torch.empty(
        (batch, num_channels, height, width),
        dtype=values.dtype,
        device=values.device,
        memory_format=_memory_format(values),
    )
    index = draws.channels[:, :, None, None].expand(values.shape)
    return out.zero_().scatter_add_(1, index, values)


def _merge_draws(draws: _Draws, num_channels: int) -> tuple[Tensor, Tensor | None]:
    """The mask [B, C, H, W or 1] and, with replacement, how many draws cover each position."""
    if draws.channels is None:
        return draws.masks.view(torch.bool), None
    # uint8 counts cannot overflow below 256 draws.
    masks = draws.masks if draws.channels.shape[1] < 256 else draws.masks.to(torch.int32)
    counts = _sum_per_channel(draws, masks, num_channels)
    return counts > 0, counts


def sample_feature_mask(
    shape: Sequence[int],
    *,
    p: float = 0.5,
    mask_ratio: float = 0.5,
    area: Sequence[float] = DEFAULT_AREA,
    aspect: Sequence[float] = DEFAULT_ASPECT,
    selection: str = "sample",
    channel_sampling: str = "without_replacement",
    region: str = "rectangle",
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Tensor:
    """The boolean mask [B, C, H, W] that `local_feature_masking` would apply (True = masked).

    With the same generator state, `local_feature_masking` with these settings masks
    exactly these positions.
    """
    # The mask does not depend on the fill: any valid one will do.
    settings = MaskingSettings(p, mask_ratio, area, aspect, "zero", selection, channel_sampling, region)
    if len(shape) != 4:
        raise ValueError(f"shape must be [B, C, H, W], got {tuple(shape)!r}")
    draws = _draw_regions(shape, settings, device, generator, memory_format)
    mask = _merge_draws(draws, shape[1])[0]
    return mask.expand(tuple(shape)).contiguous(memory_format=memory_format)


def _fill_values(
    x: Tensor,
    fill: str,
    draws: _Draws,
    counts: Tensor | None,
    generator: torch.Generator | None,
) -> Tensor | float:
    """Values for the masked positions, broadcastable to x; detached from the graph."""
    if fill == "zero":
        return 0.0
    if fill == "mean":
        return x.detach().mean(dim=(2, 3), keepdim=True)
    if fill == "gaussian":
        std, mean = torch.std_mean(x.detach(), dim=(2, 3), correction=0, keepdim=True)
        noise = torch.empty_like(x, memory_format=_memory_format(x)).normal_(generator=generator)
        return noise.mul_(std).add_(mean)
    batch, num = draws.masks.shape[:2]
    values = torch.rand(batch, num, dtype=x.dtype, device=x.device, generator=generator)
    if counts is None:
        return values[:, :, None, None]
    # Where regions drawn for the same channel overlap, the fill is the mean of their values.
    weighted = torch.where(draws.masks.view(torch.bool), values[:, :, None, None].float(), 0.0)
    sums = _sum_per_channel(draws, weighted, x.shape[1])
    return sums.div_(counts.clamp(min=1)).to(x.dtype)


def _check_input(x: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be a 4-D tensor [B, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")


def _mask_and_fill(x: Tensor, settings: MaskingSettings, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """The masked tensor and the boolean mask it applied ([B, C, H, W], or [B, C, H, 1] for bands)."""
    draws = _draw_regions(x.shape, settings, x.device, generator, _memory_format(x))
    mask, counts = _merge_draws(draws, x.shape[1])
    return torch.where(mask, _fill_values(x, settings.fill, draws, counts, generator), x), mask


def local_feature_masking(
    x: Tensor,
    *,
    p: float = 0.5,
    mask_ratio: float = 0.5,
    area: Sequence[float] = DEFAULT_AREA,
    aspect: Sequence[float] = DEFAULT_ASPECT,
    fill: str = "zero",
    selection: str = "sample",
    channel_sampling: str = "without_replacement",
    region: str = "rectangle",
    generator: torch.Generator | None = None,
    training: bool = True,
) -> Tensor:
    """Mask random regions of random channels of x [B, C, H, W] (see the module docstring).

    Returns x itself when not training or p == 0; otherwise a new tensor with x's dtype and
    memory format. The gradient is zero at masked positions and unchanged elsewhere.
    """
    settings = MaskingSettings(p, mask_ratio, area, aspect, fill, selection, channel_sampling, region)
    _check_input(x)
    if not training or p == 0.0:
        return x
    return _mask_and_fill(x, settings, generator)[0]


def _setting(name: str) -> property:
    """A LocalFeatureMasking attribute: field `name` of its settings, checked again when set
    (the LFM warm-up, lfm.runs.callbacks, scales `p` and `mask_ratio` epoch by epoch)."""

    def get(layer: "LocalFeatureMasking"):
        return getattr(layer.settings, name)

    def set_(layer: "LocalFeatureMasking", value) -> None:
        layer.settings = dataclasses.replace(layer.settings, **{name: value})

    return property(get, set_)


class LocalFeatureMasking(nn.Module):
    """Local Feature Masking as a layer: active in training mode, the identity in eval mode.

    After each training forward, `masked_fraction` holds the fraction of the input's values
    that were masked (a 0-d tensor, no host sync) and `expected_fraction` the fraction the
    settings ask for on average, p x k / C x mean area (bands and draws with replacement
    realise less: that gap is what they change). Its settings are in `settings`
    (a MaskingSettings) and, one by one, in attributes of their names.
    """

    p = _setting("p")
    mask_ratio = _setting("mask_ratio")
    area = _setting("area")
    aspect = _setting("aspect")
    fill = _setting("fill")
    selection = _setting("selection")
    channel_sampling = _setting("channel_sampling")
    region = _setting("region")

    def __init__(
        self,
        p: float = 0.5,
        mask_ratio: float = 0.5,
        area: Sequence[float] = DEFAULT_AREA,
        aspect: Sequence[float] = DEFAULT_ASPECT,
        fill: str = "zero",
        selection: str = "sample",
        channel_sampling: str = "without_replacement",
        region: str = "rectangle",
    ) -> None:
        super().__init__()
        self.settings = MaskingSettings(p, mask_ratio, area, aspect, fill, selection, channel_sampling, region)
        self.masked_fraction: Tensor | None = None
        self.expected_fraction: float | None = None

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x)
        if not self.training:
            return x
        settings = self.settings
        channels = x.shape[1]
        masked_channels = num_masked_channels(settings.mask_ratio, channels)
        self.expected_fraction = settings.p * masked_channels / channels * sum(settings.area) / 2
        if settings.p == 0.0:
            self.masked_fraction = x.new_zeros((), dtype=torch.float32)
            return x
        output, mask = _mask_and_fill(x, settings, None)
        self.masked_fraction = torch.count_nonzero(mask) / mask.numel()
        return output

    def extra_repr(self) -> str:
        return (
            f"p={self.p}, mask_ratio={self.mask_ratio}, area={self.area}, aspect={self.aspect}, "
            f"fill={self.fill!r}, selection={self.selection!r}, "
            f"channel_sampling={self.channel_sampling!r}, region={self.region!r}"
        )
