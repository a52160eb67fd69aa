"""CIFAR python-pickle reader, the generated stand-in, and the DataModule."""

import pickle

import numpy as np
import pytest
import torch

from lfm.data.cifar import CIFARDataModule, generate_synthetic_cifar, read_cifar_split
from lfm.errors import InputError


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return generate_synthetic_cifar(tmp_path_factory.mktemp("cifar") / "synthetic", seed=0, num_train=500, num_test=100)


def test_generated_dataset_is_cifar10_layout_and_deterministic(synthetic_root, tmp_path):
    names = sorted(path.name for path in synthetic_root.iterdir())
    assert names == ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    images, labels = read_cifar_split(synthetic_root, "cifar10", "train")
    assert images.shape == (500, 32, 32, 3) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [50] * 10
    again = generate_synthetic_cifar(tmp_path / "again", seed=0, num_train=500, num_test=100)
    for name in names:
        assert (again / name).read_bytes() == (synthetic_root / name).read_bytes(), name


def test_cifar100_layout_is_read_with_fine_labels(tmp_path):
    rng = np.random.default_rng(0)
    for name, count in (("train", 20), ("test", 10)):
        batch = {
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            b"fine_labels": list(range(count)),
            b"coarse_labels": [0] * count,
        }
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    images, labels = read_cifar_split(tmp_path, "cifar100", "test")
    assert images.shape == (10, 32, 32, 3) and labels.tolist() == list(range(10))
    raw = pickle.loads((tmp_path / "test").read_bytes())[b"data"][3]
    assert images[3, 0, 1].tolist() == [raw[1], raw[1024 + 1], raw[2048 + 1]]  # channel-major rows -> HWC


def test_missing_files_name_the_root_and_the_files(tmp_path):
    with pytest.raises(InputError, match=r"data.root=.*data_batch_1.*python version from https://www.cs.toronto.edu"):
        read_cifar_split(tmp_path, "cifar10", "train")


def test_datamodule_holds_out_a_disjoint_validation_split(synthetic_root):
    datamodule = CIFARDataModule(str(synthetic_root), val_size=50, num_workers=0, batch_size=16)
    datamodule.setup("fit")
    datamodule.setup("test")
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (450, 50, 100)
    sample = datamodule.test_set[0]
    assert sample["image"].shape == (3, 32, 32) and 0.0 <= sample["image"].min() <= sample["image"].max() <= 1.0
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (16, 3, 32, 32) and datamodule.num_classes == 10


def test_both_pipelines_give_identical_evaluation_batches_and_like_training_batches(synthetic_root):
    loaders = {}
    for pipeline in ("tensor", "pil"):
        datamodule = CIFARDataModule(str(synthetic_root), val_size=50, num_workers=0, batch_size=16, pipeline=pipeline)
        datamodule.setup("fit")
        datamodule.setup("test")
        loaders[pipeline] = datamodule
    for name in ("val_dataloader", "test_dataloader"):
        tensor_batches, pil_batches = (list(getattr(loaders[p], name)()) for p in ("tensor", "pil"))
        assert len(tensor_batches) == len(pil_batches)
        for tensor_batch, pil_batch in zip(tensor_batches, pil_batches):
            assert torch.equal(tensor_batch["image"], pil_batch["image"])
            assert torch.equal(tensor_batch["label"], pil_batch["label"])
    tensor_train, pil_train = (next(iter(loaders[p].train_dataloader())) for p in ("tensor", "pil"))
    assert tensor_train["image"].shape == pil_train["image"].shape and tensor_train["image"].dtype == torch.float32
    assert len(loaders["tensor"].train_dataloader()) == len(loaders["pil"].train_dataloader())


def test_a_pil_epoch_draws_what_a_resumed_run_draws_from_the_same_random_state(synthetic_root):
    """A resumed run restores the global random state and builds new loaders: each epoch of the pil pipeline
    must then draw the same order and augmentations as the uninterrupted run's epoch (no worker outlives its
    epoch with its own random state)."""

    def train_loader():
        datamodule = CIFARDataModule(str(synthetic_root), val_size=50, num_workers=1, batch_size=16, pipeline="pil")
        datamodule.setup("fit")
        return datamodule.train_dataloader()

    torch.manual_seed(0)
    uninterrupted = train_loader()
    next(iter(uninterrupted))
    state = torch.get_rng_state()
    second_epoch = next(iter(uninterrupted))
    torch.set_rng_state(state)
    resumed = next(iter(train_loader()))
    assert torch.equal(second_epoch["index"], resumed["index"])
    assert torch.equal(second_epoch["image"], resumed["image"])
