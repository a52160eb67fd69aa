"""The tensor pipeline's batched augmentation draws from the same distributions as the PIL
pipeline's per-image torchvision transforms (one two-sample test per transform), and each
drawn crop, flip, rectangle and square is applied exactly."""

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torchvision.transforms import v2

from lfm.data.augment import (
    BatchAugmentation,
    CutoutSettings,
    RandomErasingSettings,
    batch_crop_flip,
    batch_cutout,
    batch_random_erasing,
    crop_flip_by_gather,
    crop_flip_by_slices,
)
from lfm.data.transforms import Cutout, random_erasing
from lfm.errors import InputError

DRAWS = 3000
HEIGHT, WIDTH, PAD = 32, 16, 3
SIGNIFICANCE = 1e-3


def position_image() -> torch.Tensor:
    """uint8 [3, H, W]: channel 0 holds row + 1, channel 1 column + 1, so 0 only where padded."""
    rows = torch.arange(1, HEIGHT + 1)[:, None].expand(HEIGHT, WIDTH)
    columns = torch.arange(1, WIDTH + 1)[None, :].expand(HEIGHT, WIDTH)
    return torch.stack([rows, columns, torch.full_like(rows, 7)]).to(torch.uint8)


def pil_path(transform, image: torch.Tensor) -> torch.Tensor:
    """DRAWS outputs of a per-image transform on one image, from the global generator."""
    torch.manual_seed(0)
    return torch.stack([transform(image.clone()) for _ in range(DRAWS)])


def batch_path(function, image: torch.Tensor) -> torch.Tensor:
    """One batched call on DRAWS copies of the image, from its own generator."""
    return function(image.expand(DRAWS, *image.shape).contiguous(), torch.Generator().manual_seed(1))


def offsets_and_flips(outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row shift, column shift, mirrored) of each crop of position_image(), read at its centre."""
    centre_row, centre_column = (
        outputs[:, 0, HEIGHT // 2, WIDTH // 2].long(),
        outputs[:, 1, HEIGHT // 2, WIDTH // 2].long(),
    )
    mirrored = outputs[:, 1, HEIGHT // 2, WIDTH // 2 + 1].long() < centre_column
    column_shift = torch.where(mirrored, centre_column - 1 - (WIDTH - 1 - WIDTH // 2), centre_column - 1 - WIDTH // 2)
    return centre_row - 1 - HEIGHT // 2, column_shift, mirrored


def same_distribution(first: torch.Tensor, second: torch.Tensor) -> float:
    """p-value of a chi-square test that two samples of categories come from one distribution."""
    categories = torch.unique(torch.cat([first, second]))
    table = [[int((sample == category).sum()) for category in categories] for sample in (first, second)]
    return stats.chi2_contingency(table).pvalue


def test_pad_crop_flip_draws_the_offsets_and_mirrors_of_pad_randomcrop_and_flip():
    image = position_image()
    pil = pil_path(v2.Compose([v2.Pad(PAD), v2.RandomCrop((HEIGHT, WIDTH)), v2.RandomHorizontalFlip()]), image)
    batched = batch_path(lambda images, generator: batch_crop_flip(images, PAD, True, generator), image)
    pil_rows, pil_columns, pil_mirrored = offsets_and_flips(pil)
    rows, columns, mirrored = offsets_and_flips(batched)
    assert rows.abs().max() == PAD and columns.abs().max() == PAD
    codes = lambda r, c, m: (r + PAD) * 100 + (c + PAD) * 2 + m.long()  # noqa: E731
    assert same_distribution(codes(pil_rows, pil_columns, pil_mirrored), codes(rows, columns, mirrored)) > SIGNIFICANCE
    padded = F.pad(image, (PAD,) * 4)
    for output, row, column, mirror in list(zip(batched, rows, columns, mirrored))[:200]:
        crop = padded[:, PAD + row : PAD + row + HEIGHT, PAD + column : PAD + column + WIDTH]
        assert torch.equal(output, crop.flip(-1) if mirror else crop)


def erased_boxes(outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(erased, top, left, height, width) of the one zeroed rectangle in each image of ones."""
    erased = outputs[:, 0] == 0
    rows, columns = erased.any(dim=2), erased.any(dim=1)
    height, width = rows.sum(1), columns.sum(1)
    assert torch.equal(erased.sum((1, 2)), height * width), "each erased region is one rectangle"
    assert torch.equal(outputs[:, 0] == 0, outputs[:, 2] == 0), "all channels erased alike"
    return height > 0, rows.long().argmax(1), columns.long().argmax(1), height, width


def test_random_erasing_draws_the_rectangles_of_torchvision():
    settings = RandomErasingSettings(p=0.6, scale=(0.02, 0.4), ratio=(0.3, 3.3), value=0.0)
    image = torch.ones(3, HEIGHT, WIDTH)
    pil = erased_boxes(pil_path(random_erasing(settings), image))
    batched = erased_boxes(
        batch_path(lambda images, generator: batch_random_erasing(images, settings, generator), image)
    )
    assert same_distribution(pil[0], batched[0]) > SIGNIFICANCE
    for pil_values, batched_values in zip(pil[1:], batched[1:]):
        assert same_distribution(pil_values[pil[0]], batched_values[batched[0]]) > SIGNIFICANCE
    area = lambda boxes: (boxes[3] * boxes[4])[boxes[0]].float()  # noqa: E731
    assert stats.ks_2samp(area(pil), area(batched)).pvalue > SIGNIFICANCE


def test_random_erasing_fills_with_the_value_per_channel_or_noise():
    image = torch.ones(4, 3, HEIGHT, WIDTH)
    generator = torch.Generator().manual_seed(0)
    per_channel = batch_random_erasing(image, RandomErasingSettings(p=1.0, value=(0.1, 0.2, 0.3)), generator)
    erased = per_channel != 1
    assert erased.any()
    for channel, value in enumerate((0.1, 0.2, 0.3)):
        assert torch.allclose(per_channel[:, channel][erased[:, channel]], torch.tensor(value))
    noise = batch_random_erasing(image, RandomErasingSettings(p=1.0, value="random"), generator)
    assert noise[noise != 1].std() > 0.5


def test_cutout_draws_the_squares_of_the_per_image_cutout():
    settings = CutoutSettings(p=0.7, size=0.5)
    image = torch.ones(3, HEIGHT, WIDTH)
    pil = erased_boxes(pil_path(Cutout(settings.p, settings.size), image))
    batched = erased_boxes(batch_path(lambda images, generator: batch_cutout(images, settings, generator), image))
    for pil_values, batched_values in zip(pil, batched):
        assert same_distribution(pil_values, batched_values) > SIGNIFICANCE


def test_augmentation_turns_uint8_batches_into_unit_floats_like_todtype():
    images = torch.randint(0, 256, (5, 3, HEIGHT, WIDTH), dtype=torch.uint8)
    floats = BatchAugmentation(pad=0, flip=False)(images, torch.Generator().manual_seed(0))
    assert floats.dtype == torch.float32
    assert torch.equal(floats, v2.ToDtype(torch.float32, scale=True)(images))


def test_augmentation_is_reproducible_from_the_generator_state():
    augmentation = BatchAugmentation(
        pad=PAD, flip=True, random_erasing=RandomErasingSettings(p=0.5), cutout=CutoutSettings()
    )
    images = position_image().expand(64, 3, HEIGHT, WIDTH).contiguous()
    generator = torch.Generator().manual_seed(5)
    augmentation(images, generator)
    state = generator.get_state()
    first = augmentation(images, generator)
    generator.set_state(state)
    assert torch.equal(augmentation(images, generator), first)


def test_negative_pad_names_the_key():
    with pytest.raises(InputError, match="data.pad"):
        BatchAugmentation(pad=-1)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_crop_flip_by_slices_equals_the_gather_of_the_accelerator_path(dtype):
    generator = torch.Generator().manual_seed(3)
    images = (torch.rand(64, 3, HEIGHT, WIDTH, generator=generator) * 255).to(dtype)
    top = torch.randint(-PAD, PAD + 1, (64,), generator=generator)
    left = torch.randint(-PAD, PAD + 1, (64,), generator=generator)
    mirrored = torch.rand(64, generator=generator) < 0.5
    assert torch.equal(
        crop_flip_by_slices(images, top, left, mirrored), crop_flip_by_gather(images, top, left, mirrored)
    )
