"""Training and evaluation transforms, and the input regularizers."""

import pytest
import torch
from PIL import Image

from lfm.data.augment import CutoutSettings, RandomErasingSettings
from lfm.data.transforms import Cutout, eval_transform, train_transform
from lfm.errors import InputError


def test_eval_transform_gives_unit_range_tensors_of_the_configured_size():
    image = Image.new("RGB", (64, 128), (255, 0, 128))
    tensor = eval_transform((96, 48))(image)
    assert tensor.shape == (3, 96, 48) and tensor.dtype == torch.float32
    assert torch.allclose(tensor[:, 10, 10], torch.tensor([1.0, 0.0, 128 / 255]))


def test_cutout_zeroes_one_clipped_square():
    torch.manual_seed(0)
    cutout = Cutout(p=1.0, size=0.5)
    for _ in range(50):
        erased = cutout(torch.ones(3, 32, 16)) == 0
        rows, cols = erased[0].any(dim=1), erased[0].any(dim=0)
        assert erased[0].sum() == rows.sum() * cols.sum(), "not one rectangle"
        assert rows.sum() <= 8 and cols.sum() <= 8 and erased[0].sum() > 0
        assert torch.equal(erased[0], erased[1])


def test_cutout_probability_zero_is_identity():
    image = torch.rand(3, 8, 8)
    assert torch.equal(Cutout(p=0.0)(image), image)


def test_random_erasing_and_cutout_are_added_to_the_training_transform():
    transform = train_transform(
        (32, 16),
        pad=0,
        flip=False,
        random_erasing_settings=RandomErasingSettings(p=1.0),
        cutout_settings=CutoutSettings(p=0.0),
    )
    names = [type(step).__name__ for step in transform.transforms]
    assert names[-2:] == ["RandomErasing", "Cutout"]
    erased = transform(Image.new("RGB", (16, 32), (255, 255, 255)))
    assert (erased == 0).any() and (erased == 1).any()


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: CutoutSettings.from_config({"p": 2.0}), "data.cutout.p"),
        (lambda: CutoutSettings.from_config({"size": 0.0}), "data.cutout.size"),
        (lambda: CutoutSettings.from_config({"sise": 0.5}), "data.cutout has unknown keys"),
        (lambda: RandomErasingSettings.from_config({"scale": [0.4, 0.02]}), "data.random_erasing.scale"),
        (lambda: RandomErasingSettings.from_config({"value": "noise"}), "data.random_erasing.value"),
    ],
)
def test_bad_input_regularizer_settings_name_the_key(build, key):
    with pytest.raises(InputError, match=key):
        build()
