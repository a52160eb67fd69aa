import dataclasses
import inspect
import math
import re

import pytest
import torch

from lfm.masking import (
    CHANNEL_SAMPLINGS,
    FILLS,
    REGIONS,
    LocalFeatureMasking,
    MaskingSettings,
    local_feature_masking,
    sample_feature_mask,
)

OFFICIAL = dict(selection="batch", channel_sampling="with_replacement", region="band", fill="random")


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def features(*shape: int, seed: int = 0) -> torch.Tensor:
    """Strictly positive features, so a zero at a position means it was masked."""
    return torch.rand(*shape, generator=seeded(seed)) + 1.0


def masked_regions(mask: torch.Tensor) -> torch.Tensor:
    """The [N, H, W] maps of the (sample, channel) pairs that have a masked position."""
    maps = mask.flatten(0, 1)
    return maps[maps.flatten(1).any(1)]


def row_and_col_extents(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked rows, masked columns, and whether each map is exactly their product."""
    rows, cols = maps.any(2), maps.any(1)
    return rows, cols, (maps == (rows[:, :, None] & cols[:, None, :])).flatten(1).all(1)


def one_run(flags: torch.Tensor) -> torch.Tensor:
    """Whether the True entries of each row of `flags` [N, L] are consecutive."""
    starts = flags.int().diff(dim=1, prepend=torch.zeros_like(flags[:, :1], dtype=torch.int))
    return (starts == 1).sum(1) == 1


# Identity


def test_eval_mode_is_identity() -> None:
    x = features(4, 8, 9, 7)
    layer = LocalFeatureMasking(p=1.0, mask_ratio=1.0).eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(local_feature_masking(x, p=1.0, mask_ratio=1.0, training=False), x)


def test_p_zero_is_identity_in_training() -> None:
    x = features(4, 8, 9, 7)
    assert torch.equal(LocalFeatureMasking(p=0.0).train()(x), x)


def test_module_matches_functional_form_in_training() -> None:
    x = features(4, 8, 9, 7)
    torch.manual_seed(3)
    from_module = LocalFeatureMasking(p=1.0, fill="random").train()(x)
    torch.manual_seed(3)
    assert torch.equal(from_module, local_feature_masking(x, p=1.0, fill="random"))


def test_op_masks_exactly_the_positions_of_sample_feature_mask() -> None:
    x = features(6, 10, 12, 9)
    for channel_sampling in CHANNEL_SAMPLINGS:
        settings = dict(p=0.5, channel_sampling=channel_sampling)
        out = local_feature_masking(x, generator=seeded(5), **settings)
        mask = sample_feature_mask(x.shape, generator=seeded(5), **settings)
        assert mask.dtype == torch.bool and mask.shape == x.shape
        assert torch.equal(out == 0, mask)
        assert torch.equal(out, torch.where(mask, 0.0, x))


# Sample and channel selection


def test_full_settings_mask_every_channel_of_every_sample() -> None:
    mask = sample_feature_mask((5, 16, 10, 8), p=1.0, mask_ratio=1.0, generator=seeded())
    assert mask.any(dim=(2, 3)).all()


def test_per_sample_masking_rate_is_close_to_p() -> None:
    n, p = 4000, 0.3
    mask = sample_feature_mask((n, 2, 4, 4), p=p, mask_ratio=1.0, generator=seeded())
    rate = mask.flatten(1).any(1).float().mean().item()
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize(
    ("channels", "mask_ratio", "expected"),
    [(64, 0.5, 32), (10, 0.3, 3), (5, 0.5, 3), (7, 1.0, 7), (8, 0.0, 0)],
)
def test_without_replacement_masks_exactly_round_ratio_times_channels(
    channels: int, mask_ratio: float, expected: int
) -> None:
    mask = sample_feature_mask((50, channels, 6, 5), p=1.0, mask_ratio=mask_ratio, generator=seeded())
    assert (mask.any(dim=(2, 3)).sum(1) == expected).all()


def test_with_replacement_masks_fewer_distinct_channels() -> None:
    mask = sample_feature_mask((300, 64, 4, 4), p=1.0, channel_sampling="with_replacement", generator=seeded())
    distinct = mask.any(dim=(2, 3)).sum(1).float()
    expected = 64 * (1 - (63 / 64) ** 32)  # about 25.3 distinct channels in 32 draws
    assert distinct.max() <= 32
    assert abs(distinct.mean().item() - expected) < 0.5


def test_batch_selection_masks_all_or_no_samples_with_shared_channels() -> None:
    outcomes = set()
    for seed in range(30):
        for channel_sampling in CHANNEL_SAMPLINGS:
            mask = sample_feature_mask(
                (6, 12, 9, 8),
                selection="batch",
                channel_sampling=channel_sampling,
                generator=seeded(seed),
            )
            channels = mask.any(dim=(2, 3))
            masked = channels.any(1)
            assert masked.all() or not masked.any()
            assert (channels == channels[:1]).all()
            outcomes.add(bool(masked.all()))
            if masked.all():
                assert not (mask == mask[:1]).all(), "regions must be drawn per sample"
    assert outcomes == {True, False}


# Regions


@pytest.mark.parametrize(
    ("shape", "area", "aspect"),
    [
        ((64, 16, 32, 24), (0.02, 0.4), (0.3, 1 / 0.3)),
        ((16, 16, 128, 64), (0.02, 0.4), (0.3, 1 / 0.3)),
        ((64, 16, 40, 40), (0.1, 0.2), (0.5, 0.5)),
    ],
)
def test_rectangles_are_inside_the_map_with_area_and_aspect_in_range(
    shape: tuple[int, ...], area: tuple[float, float], aspect: tuple[float, float]
) -> None:
    mask = sample_feature_mask(shape, p=1.0, mask_ratio=1.0, area=area, aspect=aspect, generator=seeded())
    maps = masked_regions(mask)
    rows, cols, is_product = row_and_col_extents(maps)
    assert maps.shape[0] == shape[0] * shape[1]
    assert is_product.all() and one_run(rows).all() and one_run(cols).all()
    h, w = rows.sum(1).float(), cols.sum(1).float()
    size = shape[2] * shape[3]
    # One pixel of rounding tolerance on each side.
    assert ((h + 1) * (w + 1) >= area[0] * size).all()
    assert ((h - 1) * (w - 1) <= area[1] * size).all()
    assert (h + 1 >= aspect[0] * (w - 1)).all()
    assert (h - 1 <= aspect[1] * (w + 1)).all()


def test_band_regions_are_full_width_row_bands_smaller_than_rectangles() -> None:
    shape = (64, 16, 128, 64)
    band = sample_feature_mask(shape, p=1.0, mask_ratio=1.0, region="band", generator=seeded())
    rectangle = sample_feature_mask(shape, p=1.0, mask_ratio=1.0, generator=seeded())
    rows, cols, is_product = row_and_col_extents(masked_regions(band))
    assert is_product.all() and cols.all() and one_run(rows).all()
    band_fraction = band.float().mean().item()
    rectangle_fraction = rectangle.float().mean().item()
    empty = 1 - band.any(dim=(2, 3)).float().mean().item()
    # Measured with this sampler: band about 0.11 (empty about 0.43), rectangle about 0.21.
    assert 0.08 < band_fraction < 0.14
    assert 0.18 < rectangle_fraction < 0.24
    assert rectangle_fraction - band_fraction > 0.06
    assert 0.3 < empty < 0.55


def test_aspect_range_outside_what_fits_is_clamped_to_fit() -> None:
    mask = sample_feature_mask(
        (32, 8, 16, 16),
        p=1.0,
        mask_ratio=1.0,
        area=(0.5, 0.5),
        aspect=(10.0, 20.0),
        generator=seeded(),
    )
    rows, cols, is_product = row_and_col_extents(masked_regions(mask))
    assert is_product.all()
    assert (rows.sum(1) == 16).all() and (cols.sum(1) == 8).all()


# Fill values


@pytest.mark.parametrize("channel_sampling", CHANNEL_SAMPLINGS)
def test_zero_fill(channel_sampling: str) -> None:
    x = features(8, 12, 10, 9)
    out = local_feature_masking(x, p=1.0, channel_sampling=channel_sampling, generator=seeded())
    mask = sample_feature_mask(x.shape, p=1.0, channel_sampling=channel_sampling, generator=seeded())
    assert (out[mask] == 0).all() and torch.equal(out[~mask], x[~mask])


def test_random_fill_is_one_value_in_unit_interval_per_region() -> None:
    x = features(8, 12, 10, 9)
    out = local_feature_masking(x, p=1.0, fill="random", generator=seeded())
    mask = sample_feature_mask(x.shape, p=1.0, generator=seeded())
    region_max = torch.where(mask, out, -1.0).amax(dim=(2, 3))
    region_min = torch.where(mask, out, 2.0).amin(dim=(2, 3))
    has_region = mask.any(dim=(2, 3))
    assert torch.equal(region_max[has_region], region_min[has_region])
    assert (region_min[has_region] >= 0).all() and (region_max[has_region] < 1).all()
    assert region_max[has_region].unique().numel() > 1


def test_random_fill_with_replacement_stays_in_unit_interval() -> None:
    x = features(8, 16, 10, 9)
    out = local_feature_masking(
        x,
        p=1.0,
        mask_ratio=1.0,
        fill="random",
        channel_sampling="with_replacement",
        generator=seeded(),
    )
    mask = sample_feature_mask(x.shape, p=1.0, mask_ratio=1.0, channel_sampling="with_replacement", generator=seeded())
    assert (out[mask] >= 0).all() and (out[mask] < 1).all()
    assert torch.equal(out[~mask], x[~mask])


def test_random_fill_of_overlapping_draws_of_a_channel_is_their_mean() -> None:
    x = features(300, 2, 8, 8)
    out = local_feature_masking(
        x,
        p=1.0,
        mask_ratio=1.0,
        area=(0.2, 0.4),
        fill="random",
        channel_sampling="with_replacement",
        generator=seeded(),
    )
    mask = sample_feature_mask(
        x.shape,
        p=1.0,
        mask_ratio=1.0,
        area=(0.2, 0.4),
        channel_sampling="with_replacement",
        generator=seeded(),
    )
    # A channel drawn twice, with partly overlapping regions, shows three values: the two
    # draws' values and, where they overlap, their mean.
    checked = 0
    for values, where in zip(out.flatten(0, 1), mask.flatten(0, 1)):
        distinct = values[where].unique()
        if distinct.numel() == 3:
            assert distinct[1].item() == pytest.approx(distinct[[0, 2]].mean().item(), abs=1e-6)
            checked += 1
    assert checked > 10


def test_mean_fill_is_the_channel_mean() -> None:
    x = features(8, 12, 10, 9)
    out = local_feature_masking(x, p=1.0, fill="mean", generator=seeded())
    mask = sample_feature_mask(x.shape, p=1.0, generator=seeded())
    means = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    assert torch.equal(out[mask], means[mask])


def test_gaussian_fill_has_the_channel_mean_and_std() -> None:
    x = torch.randn(4, 2, 64, 64, generator=seeded()) * 2.0 + 5.0
    out = local_feature_masking(x, p=1.0, mask_ratio=1.0, fill="gaussian", generator=seeded())
    mask = sample_feature_mask(x.shape, p=1.0, mask_ratio=1.0, generator=seeded())
    filled = out[mask]
    assert not torch.equal(filled, x[mask])
    assert abs(filled.mean().item() - 5.0) < 0.15
    assert abs(filled.std().item() - 2.0) < 0.15


# Gradients, reproducibility, no in-place change


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("channel_sampling", CHANNEL_SAMPLINGS)
@pytest.mark.parametrize("region", REGIONS)
def test_gradient_is_zero_at_masked_positions_and_upstream_elsewhere(
    fill: str, channel_sampling: str, region: str
) -> None:
    settings = dict(p=1.0, channel_sampling=channel_sampling, region=region)
    x = features(4, 8, 10, 9).requires_grad_()
    upstream = torch.randn(x.shape, generator=seeded(1))
    local_feature_masking(x, fill=fill, generator=seeded(), **settings).backward(upstream)
    mask = sample_feature_mask(x.shape, generator=seeded(), **settings)
    assert mask.any()
    assert torch.equal(x.grad, torch.where(mask, 0.0, upstream))


@pytest.mark.parametrize("settings", [dict(fill="gaussian"), dict(OFFICIAL)])
def test_seeded_runs_are_reproducible(settings: dict) -> None:
    x = features(8, 16, 12, 10)
    first = local_feature_masking(x, p=1.0, generator=seeded(7), **settings)
    assert torch.equal(first, local_feature_masking(x, p=1.0, generator=seeded(7), **settings))
    assert not torch.equal(first, local_feature_masking(x, p=1.0, generator=seeded(8), **settings))
    torch.manual_seed(7)
    global_first = local_feature_masking(x, p=1.0, **settings)
    torch.manual_seed(7)
    assert torch.equal(global_first, local_feature_masking(x, p=1.0, **settings))


def test_input_is_not_modified_in_place() -> None:
    x = features(4, 8, 10, 9)
    before = x.clone()
    for fill in FILLS:
        for channel_sampling in CHANNEL_SAMPLINGS:
            local_feature_masking(x, p=1.0, mask_ratio=1.0, fill=fill, channel_sampling=channel_sampling)
    assert torch.equal(x, before)


# Shapes, dtypes, memory formats


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("channel_sampling", CHANNEL_SAMPLINGS)
@pytest.mark.parametrize("region", REGIONS)
def test_dtype_and_memory_format_are_preserved(
    dtype: torch.dtype, channels_last: bool, fill: str, channel_sampling: str, region: str
) -> None:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    settings = dict(p=1.0, mask_ratio=1.0, channel_sampling=channel_sampling, region=region)
    x = features(3, 6, 7, 5).to(dtype=dtype, memory_format=memory_format)
    out = local_feature_masking(x, fill=fill, generator=seeded(), **settings)
    mask = sample_feature_mask(x.shape, generator=seeded(), memory_format=memory_format, **settings)
    assert out.dtype == dtype
    assert out.is_contiguous(memory_format=memory_format)
    assert mask.is_contiguous(memory_format=memory_format)
    assert torch.equal(out[~mask], x[~mask])
    assert not torch.equal(out[mask], x[mask])
    if fill == "random":
        assert (out[mask] >= 0).all() and (out[mask] < 1).all()


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 9])
@pytest.mark.parametrize(("height", "width"), [(7, 5), (1, 1), (1, 9), (6, 1), (128, 64)])
@pytest.mark.parametrize("region", REGIONS)
def test_any_batch_size_and_map_size(batch: int, height: int, width: int, region: str) -> None:
    x = features(batch, 4, height, width)
    out = local_feature_masking(x, p=1.0, mask_ratio=1.0, region=region, generator=seeded())
    assert out.shape == x.shape
    mask = sample_feature_mask(x.shape, p=1.0, mask_ratio=1.0, region=region, generator=seeded())
    assert torch.equal(out == 0, mask)
    if region == "rectangle":
        assert mask.any(dim=(2, 3)).all()
    if (height, width) == (1, 1) and region == "rectangle":
        assert mask.all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("settings", [dict(fill="gaussian"), dict(OFFICIAL), dict(fill="mean")])
def test_cuda_runs_without_host_sync_and_matches_its_mask(settings: dict) -> None:
    x = features(8, 16, 32, 16).cuda().requires_grad_()
    generator = torch.Generator(device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = local_feature_masking(x, p=0.5, generator=generator.manual_seed(0), **settings)
        out.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    mask_settings = {k: v for k, v in settings.items() if k != "fill"}
    mask = sample_feature_mask(x.shape, p=0.5, device="cuda", generator=generator.manual_seed(0), **mask_settings)
    assert torch.equal(x.grad, (~mask).float())
    assert torch.equal(out.detach()[~mask], x.detach()[~mask])


# Argument validation


BAD_SETTINGS = [
    ("p", -0.1, "p must be in [0, 1], got -0.1"),
    ("p", 1.5, "p must be in [0, 1]"),
    ("p", float("nan"), "p must be in [0, 1]"),
    ("mask_ratio", 1.5, "mask_ratio must be in [0, 1], got 1.5"),
    ("mask_ratio", -1, "mask_ratio must be in [0, 1]"),
    ("area", (0.0, 0.4), "area must satisfy 0 < area[0] <= area[1] <= 1, got (0.0, 0.4)"),
    ("area", (0.5, 0.2), "area must satisfy"),
    ("area", (0.1, 1.5), "area must satisfy"),
    ("area", (0.1,), "area must be a sequence of two numbers"),
    ("area", 0.3, "area must be a sequence of two numbers"),
    ("area", ("small", "large"), "area must be a sequence of two numbers"),
    ("aspect", (0.0, 2.0), "aspect must satisfy 0 < aspect[0] <= aspect[1]"),
    ("aspect", (3.0, 1.0), "aspect must satisfy"),
    ("aspect", (1.0, 2.0, 3.0), "aspect must be a sequence of two numbers"),
    ("selection", "per_batch", "selection must be one of ('sample', 'batch'), got 'per_batch'"),
    ("channel_sampling", "random", "channel_sampling must be one of"),
    ("region", "circle", "region must be one of ('rectangle', 'band'), got 'circle'"),
]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [*BAD_SETTINGS, ("fill", "ones", "fill must be one of ('zero', 'random', 'mean', 'gaussian'), got 'ones'")],
)
def test_invalid_settings_raise_value_error_naming_the_argument(name: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        LocalFeatureMasking(**{name: value})
    with pytest.raises(ValueError, match=re.escape(message)):
        local_feature_masking(features(2, 4, 5, 5), **{name: value})


@pytest.mark.parametrize(("name", "value", "message"), BAD_SETTINGS)
def test_invalid_mask_settings_raise_value_error(name: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        sample_feature_mask((2, 4, 5, 5), **{name: value})


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (1, 2, 3, 4, 5)])
def test_input_must_be_4d(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"x must be a 4-D tensor \[B, C, H, W\], got shape"):
        local_feature_masking(torch.zeros(shape), p=1.0)
    with pytest.raises(ValueError, match="shape must be"):
        sample_feature_mask(shape)


def test_integer_input_is_rejected() -> None:
    message = "x must be a floating-point tensor, got dtype torch.int64"
    with pytest.raises(ValueError, match=message):
        local_feature_masking(torch.zeros(2, 3, 4, 4, dtype=torch.long))


def test_repr_lists_the_settings() -> None:
    text = repr(LocalFeatureMasking(p=0.25, fill="mean", region="band"))
    for part in [
        "p=0.25",
        "mask_ratio=0.5",
        "area=(0.02, 0.4)",
        "fill='mean'",
        "region='band'",
        "selection='sample'",
        "channel_sampling='without_replacement'",
        "aspect=(0.3, ",
    ]:
        assert part in text


def test_op_layer_and_mask_share_their_settings_and_defaults() -> None:
    """The three entry points spell out the settings; MaskingSettings checks them for all."""

    def defaults(function) -> dict:
        return {
            name: parameter.default
            for name, parameter in inspect.signature(function).parameters.items()
            if name in {field.name for field in dataclasses.fields(MaskingSettings)}
        }

    layer = defaults(LocalFeatureMasking.__init__)
    assert list(layer) == [field.name for field in dataclasses.fields(MaskingSettings)]
    assert defaults(local_feature_masking) == layer
    assert defaults(sample_feature_mask) == {name: value for name, value in layer.items() if name != "fill"}


def test_layer_settings_are_checked_again_when_changed() -> None:
    layer = LocalFeatureMasking(area=[0.1, 0.2])
    assert layer.settings.area == layer.area == (0.1, 0.2)
    layer.p, layer.mask_ratio = 0.25, 0.75
    assert (layer.settings.p, layer.settings.mask_ratio) == (0.25, 0.75)
    with pytest.raises(ValueError, match=re.escape("p must be in [0, 1], got 2")):
        layer.p = 2
    assert layer.p == 0.25


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"selection": "batch", "channel_sampling": "with_replacement", "region": "band", "fill": "random"},
        {"fill": "gaussian"},
        {"fill": "mean"},
    ],
)
def test_module_traces_under_torch_compile_without_graph_breaks(settings):
    import torch._dynamo

    module = LocalFeatureMasking(p=1.0, **settings).train()
    x = torch.randn(4, 8, 16, 8)
    explanation = torch._dynamo.explain(module)(x)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    output = compiled(x)
    assert output.shape == x.shape and 0 < module.masked_fraction < 1
