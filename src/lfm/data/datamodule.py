"""LightningDataModule for re-ID datasets on disk (real or synthetic), one reader per layout."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from lfm.data import market, msmt17
from lfm.data.batching import TensorBatches
from lfm.data.cache import cache_bytes, cache_file_path, cached_images, check_cache_memory
from lfm.data.loading import ImageDataModule, check_batch_sizes, check_pipeline
from lfm.data.market import ReIDImageDataset, ReIDSample, check_images, hold_out_identities, ranking_dataset
from lfm.data.samplers import IdentityBalancedOrder, IdentityBalancedSampler, RandomOrder, SequentialOrder
from lfm.data.summary import find_published_counts, print_summary
from lfm.data.synthetic import ensure_synthetic_reid, resolve_synthetic_preset
from lfm.data.transforms import eval_transform
from lfm.errors import InputError

SAMPLERS = ("random", "identity_balanced")
# data.layout -> the reader of that on-disk layout: its check_layout(root), read_split(root, split), and for the
# dataset summary read_published_splits(root) and DISTRACTOR_PID
LAYOUTS: dict[str, ModuleType] = {"market": market, "msmt17": msmt17}


class ReIDDataModule(ImageDataModule):
    """Train on the train split, test by ranking the query split against the gallery split.

    `layout` names the reader of the folder at `root` (see LAYOUTS and docs/datasets.md):
    `market` (Market-1501, DukeMTMC-reID, CUHK03-NP, the synthetic data) or `msmt17`.

    `val_ids` > 0 holds that many training identities out as a validation query/gallery set
    (used for checkpoint selection, so the test split is never used to pick a model).
    `synthetic` ({"preset": name, "seed": int, "scale": fraction of the preset's identities})
    generates that dataset at `root` on first use. `random_erasing` ({p, scale, ratio, value})
    and `cutout` ({p, size}) add those input regularizers to the training augmentation;
    `batch_transforms` ({label: {_target_: import path, keyword arguments}}) adds the user's own
    after them (lfm.data.augment.build_batch_transforms), on training batches only.

    `published_counts` names the real dataset whose published counts the data at `root` should have
    (see lfm.data.summary): the first setup prints the dataset summary, with a warning per count that
    differs (a synthetic dataset at a scale other than 1 has no published counts).

    `pipeline="tensor"` (the default) decodes every image once into a uint8 cache file beside
    the dataset (`<root>.cache/`) or under `cache_dir` (see lfm.data.cache), gathers batches from it by index and augments them on
    the model's device; the cache may take at most `cache_max_memory` of RAM (of GPU memory
    with `cache_on_device`, which keeps it on the model's device). `pipeline="pil"` decodes
    and augments every image per batch in `num_workers` loader processes, for datasets that
    do not fit in memory. Both give the same evaluation input and the same augmentation
    distributions.
    """

    def __init__(
        self,
        root: str,
        layout: str = "market",
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
        batch_transforms: Mapping | None = None,
        pipeline: str = "tensor",
        cache_dir: str | None = None,
        cache_max_memory: float = 0.5,
        cache_on_device: bool = False,
        published_counts: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if layout not in LAYOUTS:
            raise InputError(f"data.layout must be one of {list(LAYOUTS)}, got {layout!r}")
        if synthetic and layout != "market":
            raise InputError(f"data.synthetic generates the market layout; set data.layout=market, got {layout!r}")
        if sampler not in SAMPLERS:
            raise InputError(f"data.sampler must be one of {SAMPLERS}, got {sampler!r}")
        check_pipeline(pipeline)
        if len(image_size) != 2 or min(image_size) < 16:
            raise InputError(f"data.image_size must be [height, width] with both >= 16, got {list(image_size)}")
        check_batch_sizes(batch_size, eval_batch_size)
        if sampler == "identity_balanced" and batch_size % num_instances:
            raise InputError(
                f"data.batch_size={batch_size} must be a multiple of data.num_instances={num_instances} "
                f"for the identity_balanced sampler"
            )
        if not 0 < cache_max_memory <= 1:
            raise InputError(f"data.cache_max_memory is a fraction of memory in (0, 1], got {cache_max_memory}")
        self.root = Path(root).expanduser()
        self.layout = LAYOUTS[layout]
        self.image_size = tuple(image_size)
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.sampler, self.num_instances = sampler, num_instances
        self.val_ids, self.seed = val_ids, seed
        self.synthetic = dict(synthetic) if synthetic else None
        self.pipeline = pipeline
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.cache_max_memory, self.cache_on_device = cache_max_memory, cache_on_device
        published = find_published_counts(published_counts) if published_counts else None
        scaled = self.synthetic is not None and self.synthetic.get("scale", 1.0) != 1.0
        self.published = None if scaled else published
        self.summary_shown = False
        self.set_up_augmentation(self.image_size, pad, flip, random_erasing, cutout, batch_transforms, seed)
        self.train_set: ReIDImageDataset | None = None
        self.val_set: ReIDImageDataset | None = None
        self.test_set: ReIDImageDataset | None = None
        self.cached: dict[str, torch.Tensor] = {}
        self._splits: dict[str, list[ReIDSample]] = {}

    def prepare_data(self) -> None:
        if self.synthetic is None:
            return
        preset = resolve_synthetic_preset(self.synthetic["preset"]).scaled(self.synthetic.get("scale", 1.0))
        try:
            ensure_synthetic_reid(self.root, preset, self.synthetic["seed"])
        except FileExistsError as error:
            raise InputError(f"{error} (key data.root)") from None

    def setup(self, stage: str | None = None) -> None:
        self.layout.check_layout(self.root)
        if self.published is not None and not self.summary_shown:
            self.print_summary()
            self.summary_shown = True
        if self.pipeline == "tensor" and not self._splits:
            self._splits = {split: self.layout.read_split(self.root, split) for split in ("train", "query", "gallery")}
            total = sum(len(samples) for samples in self._splits.values())
            check_cache_memory(cache_bytes(total, self.image_size), self.cache_max_memory, self._cache_device())
        if stage in (None, "fit", "validate") and self.train_set is None:
            samples = self._split("train")
            train, val_query, val_gallery = hold_out_identities(samples, self.val_ids, self.seed)
            labels = {pid: label for label, pid in enumerate(sorted({sample.pid for sample in train}))}
            self.train_set = ReIDImageDataset(train, self.train_transform, labels)
            if self.val_ids:
                self.val_set = ranking_dataset(val_query, val_gallery, eval_transform(self.image_size))
            self._load("train", samples)
        if stage in (None, "test", "predict") and self.test_set is None:
            query, gallery = self._split("query"), self._split("gallery")
            self.test_set = ranking_dataset(query, gallery, eval_transform(self.image_size))
            self._load("test", query + gallery)

    @rank_zero_only
    def print_summary(self) -> None:
        """Print the dataset summary of `root` (stdout) and its warnings (stderr); see lfm.data.summary."""
        print_summary(self.layout, self.root, self.published)

    def _split(self, split: str) -> list[ReIDSample]:
        return self._splits[split] if split in self._splits else self.layout.read_split(self.root, split)

    def _load(self, name: str, samples: list[ReIDSample]) -> None:
        """Tensor pipeline: the cached images of `samples`; PIL pipeline: check their headers."""
        if self.pipeline == "pil":
            check_images(samples)
            return
        path = cache_file_path(self.root, name, self.image_size, self.cache_dir)
        self.cached[name] = cached_images([sample.path for sample in samples], self.image_size, path, self.num_workers)

    def _cache_device(self) -> torch.device:
        if self.cache_on_device and torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    @property
    def num_classes(self) -> int:
        """Number of training identities (classifier outputs); call setup('fit') first."""
        return len(self.train_set.labels)

    def train_dataloader(self) -> DataLoader | TensorBatches:
        labels = [self.train_set.labels[sample.pid] for sample in self.train_set.samples]
        if self.pipeline == "tensor":
            order = (
                IdentityBalancedOrder(labels, self.num_instances, self.seed)
                if self.sampler == "identity_balanced"
                else RandomOrder(len(labels), self.seed)
            )
            fields = {"label": torch.tensor(labels), **_identity_fields(self.train_set.samples)}
            return self._batches("train", self.train_set.samples, fields, order, self.batch_size, train=True)
        if self.sampler == "identity_balanced":
            sampler = IdentityBalancedSampler(labels, self.num_instances, self.seed)
            return self.pil_loader(self.train_set, self.batch_size, sampler=sampler, drop_last=True)
        return self.pil_loader(self.train_set, self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader | TensorBatches | list:
        if self.val_set is None:
            return []
        return self._ranking_loader("train", self.val_set)

    def test_dataloader(self, shard: bool = True) -> DataLoader | TensorBatches:
        """The query + gallery batches; `shard=False` gives every DDP rank the whole set (attacks
        run on one rank). Lightning shards the PIL pipeline's DataLoader itself."""
        return self._ranking_loader("test", self.test_set, shard)

    def _ranking_loader(
        self, cache_name: str, dataset: ReIDImageDataset, shard: bool = True
    ) -> DataLoader | TensorBatches:
        if self.pipeline == "pil":
            return self.pil_loader(dataset, self.eval_batch_size)
        fields = {
            **_identity_fields(dataset.samples),
            "is_query": torch.arange(len(dataset)) < dataset.num_query,
            "index": torch.arange(len(dataset)),
        }
        return self._batches(
            cache_name, dataset.samples, fields, SequentialOrder(len(dataset)), self.eval_batch_size, shard=shard
        )

    def _batches(
        self,
        cache_name: str,
        samples: list[ReIDSample],
        fields: dict,
        order,
        batch_size: int,
        train: bool = False,
        shard: bool = True,
    ) -> TensorBatches:
        """Batches of `samples` gathered from the cache `cache_name` (whose sample list they index)."""
        cached_samples = (
            self._split("train") if cache_name == "train" else self._split("query") + self._split("gallery")
        )
        row_of = {sample.path: row for row, sample in enumerate(cached_samples)}
        rows = torch.tensor([row_of[sample.path] for sample in samples])
        if self.cache_on_device and self.trainer is not None:
            self.cached[cache_name] = self.cached[cache_name].to(self.trainer.strategy.root_device)
        return self.tensor_batches(self.cached[cache_name], rows, fields, order, batch_size, train, shard)


def _identity_fields(samples: list[ReIDSample]) -> dict[str, torch.Tensor]:
    return {
        "pid": torch.tensor([sample.pid for sample in samples]),
        "camid": torch.tensor([sample.camid for sample in samples]),
    }
