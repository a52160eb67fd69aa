"""CIFAR-10 / CIFAR-100 from the standard python-pickle batches, and a generated stand-in.

Layout read (the official `cifar-10-batches-py/` and `cifar-100-python/` folders): CIFAR-10
`data_batch_1` .. `data_batch_5` and `test_batch`; CIFAR-100 `train` and `test`. Each file
is a pickled dict with `data` ([N, 3072] uint8, channel-major 32 x 32 images) and `labels`
(CIFAR-10) or `fine_labels` (CIFAR-100), as in the python versions on
https://www.cs.toronto.edu/~kriz/cifar.html (extract the archive and point `data.root` at the folder).

`generate_synthetic_cifar` writes a deterministic 10-class 32 x 32 dataset in the CIFAR-10
layout (class = a coloured shape on a textured background), so one reader serves both.
"""

import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lfm.data.batching import TensorBatches
from lfm.data.loading import ImageDataModule, check_batch_sizes, check_pipeline
from lfm.data.samplers import RandomOrder, SequentialOrder
from lfm.data.transforms import eval_transform
from lfm.errors import InputError

CIFAR_FILES = {
    "cifar10": {
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "labels": "labels",
        "classes": 10,
    },
    "cifar100": {"train": ["train"], "test": ["test"], "labels": "fine_labels", "classes": 100},
}
IMAGE_SIZE = (32, 32)
_SHAPES = 10


def read_cifar_split(root: Path, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 32, 32, 3] uint8 and labels [N] int64 of one split (train or test)."""
    spec = CIFAR_FILES[dataset]
    missing = [name for name in spec[split] if not (root / name).is_file()]
    if missing:
        raise InputError(
            f"data.root={root} is missing {', '.join(missing)}; expected the {dataset} python-pickle folder "
            f"({'cifar-10-batches-py' if dataset == 'cifar10' else 'cifar-100-python'}) with "
            f"{', '.join(spec['train'] + spec['test'])} (the python version from https://www.cs.toronto.edu/~kriz/cifar.html)"
        )
    images, labels = [], []
    for name in spec[split]:
        try:
            with (root / name).open("rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            labels.append(np.asarray(batch[spec["labels"].encode()], dtype=np.int64))
        except (OSError, pickle.UnpicklingError, KeyError, EOFError, TypeError, ValueError) as error:
            raise InputError(
                f"cannot read {root / name} as a {dataset} batch ({type(error).__name__}: {error})"
            ) from None
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.concatenate(images), np.concatenate(labels)


def _class_images(rng: np.random.Generator, label: int, count: int) -> np.ndarray:
    """`count` images of class `label`: its shape, at a random place, size and colour, on noise."""
    grid_y, grid_x = np.mgrid[0:32, 0:32].astype(np.float32)
    centre = rng.uniform(11, 21, size=(count, 2, 1, 1)).astype(np.float32)
    radius = rng.uniform(6, 11, size=(count, 1, 1)).astype(np.float32)
    dy, dx = grid_y - centre[:, 0], grid_x - centre[:, 1]
    distance = {
        0: np.hypot(dy, dx) / radius,  # disc
        1: np.maximum(abs(dy), abs(dx)) / radius,  # square
        2: (abs(dx) + abs(dy)) / radius,  # diamond
        3: np.where(abs(np.hypot(dy, dx) / radius - 0.75) < 0.25, 0.0, 2.0),  # ring
        4: np.where(
            (abs(dy) < radius / 3) | (abs(dx) < radius / 3), np.maximum(abs(dy), abs(dx)) / radius, 2.0
        ),  # cross
        5: np.where(dy > -radius, (abs(dx) + (radius - dy) / 2) / radius * 0.9, 2.0),  # triangle
        6: np.maximum(abs(dy) / (radius / 2.5), abs(dx) / radius),  # horizontal bar
        7: np.maximum(abs(dx) / (radius / 2.5), abs(dy) / radius),  # vertical bar
        8: np.where(np.hypot(dy, dx) < radius, ((grid_x // 4 + grid_y // 4) % 2) * 2.0, 2.0),  # checker disc
        9: np.where(np.hypot(dy, dx) < radius, (np.floor((dx + dy) / 3) % 2) * 2.0, 2.0),  # striped disc
    }[label % _SHAPES]
    inside = (distance <= 1.0)[..., None]
    hue = (label * 0.1 + rng.normal(0, 0.08, size=(count, 1, 1, 1))) % 1.0
    colour = 0.5 + 0.45 * np.cos(2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3])))
    background = rng.uniform(0.1, 0.9, size=(count, 1, 1, 3)) + rng.normal(0, 0.15, size=(count, 32, 32, 3))
    images = np.where(inside, colour * rng.uniform(0.6, 1.0, size=(count, 1, 1, 1)), background)
    images = images + rng.normal(0, 0.08, size=images.shape)
    return (images.clip(0, 1) * 255).round().astype(np.uint8)


def generate_synthetic_cifar(root: Path, seed: int = 0, num_train: int = 5000, num_test: int = 1000) -> Path:
    """Write a deterministic 10-class dataset in the CIFAR-10 python-pickle layout at `root`."""
    root.mkdir(parents=True, exist_ok=True)
    per_batch = -(-num_train // 5)
    splits = [(f"data_batch_{i + 1}", per_batch, seed * 1000 + i) for i in range(5)] + [
        ("test_batch", num_test, seed * 1000 + 999)
    ]
    for name, count, stream in splits:
        rng = np.random.default_rng(stream)
        labels = np.arange(count) % 10
        rng.shuffle(labels)
        images = np.empty((count, 32, 32, 3), dtype=np.uint8)
        for label in range(10):
            chosen = labels == label
            images[chosen] = _class_images(rng, label, int(chosen.sum()))
        batch = {b"data": images.transpose(0, 3, 1, 2).reshape(count, -1), b"labels": labels.tolist()}
        temporary = root / f"{name}.tmp"
        with temporary.open("wb") as handle:
            pickle.dump(batch, handle)
        temporary.replace(root / name)
    return root


class CIFARImages(Dataset):
    """Samples as dicts: image (float [3, 32, 32] in [0, 1] after `transform`), label, index."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.transform(self.images[index]), "label": int(self.labels[index]), "index": index}

    def uint8_tensor(self) -> torch.Tensor:
        """All images as one uint8 [N, 3, 32, 32] tensor (the tensor pipeline's source)."""
        return torch.from_numpy(np.ascontiguousarray(self.images.transpose(0, 3, 1, 2)))


class CIFARDataModule(ImageDataModule):
    """CIFAR-10/100 from `root`; `synthetic` ({seed, num_train, num_test}) generates the
    stand-in at `root` on first use. `val_size` training images are held out (seeded) to
    pick the best checkpoint. `pipeline="tensor"` batches the in-memory images by index and
    augments them on the model's device; `pipeline="pil"` transforms each image in
    `num_workers` loader processes (see lfm.data.datamodule.ReIDDataModule)."""

    def __init__(
        self,
        root: str,
        dataset: str = "cifar10",
        batch_size: int = 128,
        eval_batch_size: int = 256,
        num_workers: int = 2,
        pad: int = 4,
        flip: bool = True,
        val_size: int = 1000,
        seed: int = 0,
        synthetic: Mapping | None = None,
        random_erasing: Mapping | None = None,
        cutout: Mapping | None = None,
        batch_transforms: Mapping | None = None,
        pipeline: str = "tensor",
    ):
        super().__init__()
        self.save_hyperparameters()
        check_pipeline(pipeline)
        if dataset not in CIFAR_FILES:
            raise InputError(f"data.dataset must be one of {list(CIFAR_FILES)}, got {dataset!r}")
        if synthetic and dataset != "cifar10":
            raise InputError("data.synthetic generates a 10-class dataset: use it with data.dataset=cifar10")
        check_batch_sizes(batch_size, eval_batch_size)
        self.root = Path(root).expanduser()
        self.dataset, self.val_size, self.seed = dataset, val_size, seed
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.synthetic = dict(synthetic) if synthetic else None
        self.pipeline = pipeline
        self.set_up_augmentation(IMAGE_SIZE, pad, flip, random_erasing, cutout, batch_transforms, seed)
        self.eval_transform = eval_transform(IMAGE_SIZE)
        self.train_set = self.val_set = self.test_set = None

    def prepare_data(self) -> None:
        if self.synthetic is not None and not all(
            (self.root / name).is_file() for name in CIFAR_FILES["cifar10"]["train"] + ["test_batch"]
        ):
            generate_synthetic_cifar(self.root, **self.synthetic)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            images, labels = read_cifar_split(self.root, self.dataset, "train")
            if not 0 <= self.val_size < len(labels):
                raise InputError(f"data.val_size must be in [0, {len(labels) - 1}], got {self.val_size}")
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed)).numpy()
            val, train = order[: self.val_size], order[self.val_size :]
            self.train_set = CIFARImages(images[train], labels[train], self.train_transform)
            if self.val_size:
                self.val_set = CIFARImages(images[val], labels[val], self.eval_transform)
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = CIFARImages(*read_cifar_split(self.root, self.dataset, "test"), self.eval_transform)

    @property
    def num_classes(self) -> int:
        return CIFAR_FILES[self.dataset]["classes"]

    def _loader(
        self, dataset: CIFARImages, batch_size: int, shuffle: bool = False, shard: bool = True
    ) -> DataLoader | TensorBatches:
        if self.pipeline == "pil":
            return self.pil_loader(dataset, batch_size, shuffle=shuffle, drop_last=shuffle)
        order = RandomOrder(len(dataset), self.seed) if shuffle else SequentialOrder(len(dataset))
        fields = {"label": torch.from_numpy(dataset.labels).long(), "index": torch.arange(len(dataset))}
        rows = torch.arange(len(dataset))
        return self.tensor_batches(dataset.uint8_tensor(), rows, fields, order, batch_size, train=shuffle, shard=shard)

    def train_dataloader(self) -> DataLoader | TensorBatches:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | TensorBatches | list:
        return self._loader(self.val_set, self.eval_batch_size) if self.val_set is not None else []

    def test_dataloader(self, shard: bool = True) -> DataLoader | TensorBatches:
        """The test batches; `shard=False` gives every DDP rank the whole set (attacks run on one rank)."""
        return self._loader(self.test_set, self.eval_batch_size, shard=shard)
