"""`data.batch_transforms`: a user's transforms, from a module outside the package, on training batches."""

import importlib
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
from helpers import PROJECT_ROOT, TINY_TRAIN, entry_point

from lfm.data.augment import BatchAugmentation, CutoutSettings, RandomErasingSettings
from lfm.data.cifar import CIFARDataModule
from lfm.data.datamodule import ReIDDataModule
from lfm.errors import InputError

USER_MODULE = "lfm_test_user_transforms"
USER_SOURCE = textwrap.dedent(
    '''
    """A user's batch transforms, outside the lfm package."""
    from pathlib import Path

    import torch

    SEEN = []  # (label, the images it was given, its generator), per call


    class AddNoise:
        """Adds uniform noise of `strength`, drawn from the augmentation's generator."""

        def __init__(self, strength, label="noise"):
            self.strength, self.label = strength, label

        def __call__(self, images, generator):
            SEEN.append((self.label, images.clone(), generator))
            noise = torch.rand(images.shape, device=images.device, generator=generator)
            return (images + self.strength * noise).clamp(0, 1)


    class CountCalls:
        """Appends one line to `path` per call."""

        def __init__(self, path):
            self.path = Path(path)

        def __call__(self, images, generator):
            with self.path.open("a") as handle:
                handle.write(f"{tuple(images.shape)}\\n")
            return images


    class NotCallable:
        pass


    class ImagesOnly:
        def __call__(self, images):
            return images


    class Shrink:
        def __call__(self, images, generator):
            return images[:, :, ::2]
    '''
)


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    """The user's module, importable from a folder of its own (as with PYTHONPATH=<folder>)."""
    folder = tmp_path_factory.mktemp("user_code")
    (folder / f"{USER_MODULE}.py").write_text(USER_SOURCE)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(USER_MODULE, None)


@pytest.fixture
def seen(user_module):
    """The user module's record of its calls, emptied for this test."""
    calls = importlib.import_module(USER_MODULE).SEEN
    calls.clear()
    return lambda: calls


def noise(strength=0.5, **extra):
    return {"_target_": f"{USER_MODULE}.AddNoise", "strength": strength, **extra}


def make_datamodule(root, **overrides):
    settings = dict(root=str(root), image_size=(64, 32), batch_size=8, eval_batch_size=16, num_workers=0, val_ids=2)
    return ReIDDataModule(**{**settings, **overrides})


def first_train_batch(datamodule):
    return next(iter(datamodule.train_dataloader()))["image"]


def test_a_user_transform_gets_the_training_batch_and_the_augmentation_generator(tiny_market, seen):
    plain = make_datamodule(tiny_market)
    plain.setup("fit")
    datamodule = make_datamodule(tiny_market, batch_transforms={"mine": noise()})
    datamodule.setup("fit")
    transformed = first_train_batch(datamodule)
    [(_, given, generator)] = seen()
    assert generator is datamodule.augment_generator.generator
    assert given.dtype == torch.float32 and 0 <= given.min() and given.max() <= 1
    assert torch.equal(given, first_train_batch(plain))  # after pad, crop, flip: the same draws as without it
    assert transformed.shape == given.shape and not torch.equal(transformed, given)


def test_transforms_run_after_erasing_and_cutout_in_the_mapping_order(seen, user_module):
    images = torch.randint(0, 256, (6, 3, 32, 16), dtype=torch.uint8)
    erasing, cutout = RandomErasingSettings(p=1.0), CutoutSettings(p=1.0)
    user = importlib.import_module(USER_MODULE)
    transforms = {"second": user.AddNoise(0.5, "second"), "first": user.AddNoise(0.5, "first")}
    augmented = BatchAugmentation(2, True, erasing, cutout, transforms)(images, torch.Generator().manual_seed(1))
    [(first_label, first_seen, _), (second_label, second_seen, _)] = seen()
    assert (first_label, second_label) == ("second", "first")
    assert torch.equal(
        first_seen, BatchAugmentation(2, True, erasing, cutout)(images, torch.Generator().manual_seed(1))
    )
    assert not torch.equal(second_seen, first_seen) and not torch.equal(augmented, second_seen)


def test_same_seed_gives_the_same_draws_and_another_seed_others(tiny_market, seen):
    batches = []
    for seed in (0, 0, 1):
        datamodule = make_datamodule(tiny_market, seed=seed, flip=False, pad=0, batch_transforms={"mine": noise()})
        datamodule.setup("fit")
        batches.append(first_train_batch(datamodule))
    assert torch.equal(batches[0], batches[1])
    assert not torch.equal(batches[0], batches[2])


def test_a_resumed_generator_state_gives_the_same_draws(tiny_market, seen):
    datamodule = make_datamodule(tiny_market, batch_transforms={"mine": noise()})
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    next(iter(loader))
    state = datamodule.state_dict()
    expected = next(iter(loader))["image"]
    restored = make_datamodule(tiny_market, batch_transforms={"mine": noise()})
    restored.setup("fit")
    restored.load_state_dict(state)
    assert torch.equal(first_train_batch(restored), expected)


@pytest.mark.parametrize("pipeline", ["tensor", "pil"])
def test_validation_and_test_batches_are_never_transformed(tiny_market, seen, pipeline):
    plain = make_datamodule(tiny_market, pipeline=pipeline)
    datamodule = make_datamodule(tiny_market, pipeline=pipeline, batch_transforms={"mine": noise()})
    for module in (plain, datamodule):
        module.setup("fit")
        module.setup("test")
    for loader in ("val_dataloader", "test_dataloader"):
        expected = next(iter(getattr(plain, loader)()))["image"]
        batch = next(iter(getattr(datamodule, loader)()))
        datamodule.trainer = SimpleNamespace(training=False, global_rank=0)  # Lightning's, while evaluating
        assert torch.equal(datamodule.on_after_batch_transfer(batch, 0)["image"], expected)
        datamodule.trainer = None
    assert seen() == []


def test_the_pil_pipeline_transforms_training_batches_on_their_device(tiny_market, seen):
    datamodule = make_datamodule(tiny_market, pipeline="pil", batch_transforms={"mine": noise()})
    datamodule.setup("fit")
    datamodule.trainer = SimpleNamespace(training=True, global_rank=0)  # Lightning's, in the training loop
    batch = next(iter(datamodule.train_dataloader()))
    loaded = batch["image"].clone()
    transformed = datamodule.on_after_batch_transfer(batch, 0)["image"]
    [(_, given, generator)] = seen()
    assert torch.equal(given, loaded) and not torch.equal(transformed, loaded)
    assert generator is datamodule.augment_generator.generator


def test_null_entries_are_off(tiny_market):
    datamodule = make_datamodule(tiny_market, batch_transforms={"mine": None})
    assert datamodule.batch_transforms == {}


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"_target_": "no_such_user_module.AddNoise"}, "no module no_such_user_module on the Python path"),
        ({"_target_": f"{USER_MODULE}.AddNoise", "strenght": 0.5}, "does not take these arguments"),
        ({"_target_": f"{USER_MODULE}.AddNoise"}, "does not take these arguments"),
        ({"_target_": f"{USER_MODULE}.NotCallable"}, "cannot be called"),
        ({"_target_": f"{USER_MODULE}.ImagesOnly"}, "called as transform(images, generator)"),
        ({"strength": 0.5}, "has no _target_"),
    ],
)
def test_bad_entries_fail_when_the_datamodule_is_built_naming_the_key(tmp_path, user_module, entry, fragment):
    missing = tmp_path / "not_read"  # the entries fail before any data is looked at
    with pytest.raises(InputError, match=r"data\.batch_transforms\.mine") as error:
        make_datamodule(missing, batch_transforms={"mine": entry})
    assert fragment in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(InputError, match=r"data\.batch_transforms\.mine"):
        CIFARDataModule(root=str(missing), batch_transforms={"mine": entry})


def test_a_transform_that_changes_the_shape_is_named(tiny_market, user_module):
    datamodule = make_datamodule(tiny_market, batch_transforms={"small": {"_target_": f"{USER_MODULE}.Shrink"}})
    datamodule.setup("fit")
    with pytest.raises(InputError, match=r"data\.batch_transforms\.small returned shape \[8, 3, 32, 32\]"):
        first_train_batch(datamodule)


# in-process tests above cover the behaviour; the end-to-end runs (about 12 s each) are in make test-slow
@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["tensor", "pil"])
def test_train_runs_a_transform_from_the_users_pythonpath(tmp_path, user_module, pipeline):
    marker = tmp_path / "calls.txt"
    command, env = entry_point(
        "train.py",
        *TINY_TRAIN,
        f"data.pipeline={pipeline}",
        f"+data.batch_transforms.mine={{_target_:{USER_MODULE}.CountCalls,path:'{marker}'}}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(user_module), env.get("PYTHONPATH")]))
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert marker.read_text().splitlines() == ["(32, 3, 64, 32)"] * 2  # debug=fast: two training batches, nothing else
