"""LightningDataModule for Market-1501 / DukeMTMC-reID-layout folders (real or synthetic)."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from lfm.data.market import ReIDImageDataset, check_images, check_layout, hold_out_identities, ranking_dataset, read_split
from lfm.data.samplers import IdentityBalancedSampler
from lfm.data.synthetic import ensure_synthetic_reid, resolve_synthetic_preset
from lfm.data.transforms import eval_transform, train_transform
from lfm.errors import InputError

SAMPLERS = ("random", "identity_balanced")


class ReIDDataModule(L.LightningDataModule):
    """Train on `bounding_box_train/`, test by ranking `query/` against `bounding_box_test/`.

    `val_ids` > 0 holds that many training identities out as a validation query/gallery set
    (used for checkpoint selection, so the test split is never used to pick a model).
    `synthetic` ({"preset": name, "seed": int, "scale": fraction of the preset's identities})
    generates that dataset at `root` on first use. `random_erasing` ({p, scale, ratio, value})
    and `cutout` ({p, size}) add those input regularizers to the training transform.
    """

    def __init__(
        self,
        root: str,
        image_size: Sequence[int] = (256, 128),
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_workers: int = 4,
        pad: int = 10,
        flip: bool = True,
        sampler: str = "random",
        num_instances: int = 4,
        val_ids: int = 0,
        seed: int = 0,
        synthetic: Mapping | None = None,
        random_erasing: Mapping | None = None,
        cutout: Mapping | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if sampler not in SAMPLERS:
            raise InputError(f"data.sampler must be one of {SAMPLERS}, got {sampler!r}")
        if len(image_size) != 2 or min(image_size) < 16:
            raise InputError(f"data.image_size must be [height, width] with both >= 16, got {list(image_size)}")
        if batch_size < 1 or eval_batch_size < 1:
            raise InputError(f"data.batch_size and data.eval_batch_size must be >= 1, got {batch_size}, {eval_batch_size}")
        if sampler == "identity_balanced" and batch_size % num_instances:
            raise InputError(
                f"data.batch_size={batch_size} must be a multiple of data.num_instances={num_instances} "
                f"for the identity_balanced sampler"
            )
        self.root = Path(root).expanduser()
        self.image_size = tuple(image_size)
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.sampler, self.num_instances = sampler, num_instances
        self.val_ids, self.seed = val_ids, seed
        self.synthetic = dict(synthetic) if synthetic else None
        self.train_transform = train_transform(self.image_size, pad, flip, random_erasing, cutout)
        self.train_set: ReIDImageDataset | None = None
        self.val_set: ReIDImageDataset | None = None
        self.test_set: ReIDImageDataset | None = None

    def prepare_data(self) -> None:
        if self.synthetic is None:
            return
        preset = resolve_synthetic_preset(self.synthetic["preset"]).scaled(self.synthetic.get("scale", 1.0))
        try:
            ensure_synthetic_reid(self.root, preset, self.synthetic["seed"])
        except FileExistsError as error:
            raise InputError(f"{error} (key data.root)") from None

    def setup(self, stage: str | None = None) -> None:
        check_layout(self.root)
        if stage in (None, "fit", "validate") and self.train_set is None:
            samples = read_split(self.root, "train")
            check_images(samples)
            train, val_query, val_gallery = hold_out_identities(samples, self.val_ids, self.seed)
            labels = {pid: label for label, pid in enumerate(sorted({sample.pid for sample in train}))}
            self.train_set = ReIDImageDataset(train, self.train_transform, labels)
            if self.val_ids:
                self.val_set = ranking_dataset(val_query, val_gallery, eval_transform(self.image_size))
        if stage in (None, "test", "predict") and self.test_set is None:
            query, gallery = read_split(self.root, "query"), read_split(self.root, "gallery")
            check_images(query + gallery)
            self.test_set = ranking_dataset(query, gallery, eval_transform(self.image_size))

    @property
    def num_classes(self) -> int:
        """Number of training identities (classifier outputs); call setup('fit') first."""
        return len(self.train_set.labels)

    def _loader(self, dataset, batch_size: int, **kwargs) -> DataLoader:
        # Workers are not persistent: each epoch's workers are seeded from the global random
        # state, which checkpoints carry, so a resumed run draws the same augmentations.
        return DataLoader(dataset, batch_size=batch_size, num_workers=self.num_workers, **kwargs)

    def train_dataloader(self) -> DataLoader:
        if self.sampler == "identity_balanced":
            labels = [self.train_set.labels[sample.pid] for sample in self.train_set.samples]
            sampler = IdentityBalancedSampler(labels, self.num_instances, self.seed)
            return self._loader(self.train_set, self.batch_size, sampler=sampler, drop_last=True)
        return self._loader(self.train_set, self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, self.eval_batch_size) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size)
