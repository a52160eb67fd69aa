"""What the re-ID and the CIFAR DataModules share: the checks of `data.pipeline` and the batch
sizes, the training augmentation of both pipelines from one set of settings, its generator
(carried by checkpoints), and the construction of both pipelines' loaders."""

from collections.abc import Mapping, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lfm.data.augment import (
    BatchAugmentation,
    CutoutSettings,
    RandomErasingSettings,
    apply_batch_transforms,
    build_batch_transforms,
)
from lfm.data.batching import PIPELINES, AugmentationGenerator, TensorBatches, trainer_batches
from lfm.data.transforms import train_transform
from lfm.errors import InputError


def check_pipeline(pipeline: str) -> None:
    if pipeline not in PIPELINES:
        raise InputError(f"data.pipeline must be one of {PIPELINES}, got {pipeline!r}")


def check_batch_sizes(batch_size: int, eval_batch_size: int) -> None:
    if batch_size < 1 or eval_batch_size < 1:
        raise InputError(f"data.batch_size and data.eval_batch_size must be >= 1, got {batch_size}, {eval_batch_size}")


class ImageDataModule(L.LightningDataModule):
    """The loading part of ReIDDataModule and CIFARDataModule.

    A subclass's __init__ sets `pipeline` and `num_workers` and calls `set_up_augmentation`;
    its loaders are `tensor_batches` (pipeline "tensor") or `pil_loader` (pipeline "pil").
    """

    pipeline: str
    num_workers: int

    def set_up_augmentation(
        self,
        image_size: Sequence[int],
        pad: int,
        flip: bool,
        random_erasing: Mapping | None,
        cutout: Mapping | None,
        batch_transforms: Mapping | None,
        seed: int,
    ) -> None:
        """The training augmentation: `augmentation` (the tensor pipeline's, on the model's
        device) and `train_transform` (the PIL pipeline's), with the same distributions; the
        user's `batch_transforms` (built now, so a bad entry fails before any data is read); and
        `augment_generator`, the seeded generator the tensor augmentation and the batch transforms
        draw from."""
        random_erasing = RandomErasingSettings.from_config(random_erasing) if random_erasing is not None else None
        cutout = CutoutSettings.from_config(cutout) if cutout is not None else None
        self.batch_transforms = build_batch_transforms(batch_transforms)
        self.augmentation = BatchAugmentation(pad, flip, random_erasing, cutout, self.batch_transforms)
        self.train_transform = train_transform(image_size, pad, flip, random_erasing, cutout)
        self.augment_generator = AugmentationGenerator(seed)

    def tensor_batches(
        self,
        images: torch.Tensor,
        rows: torch.Tensor,
        fields: dict[str, torch.Tensor],
        order,
        batch_size: int,
        train: bool = False,
        shard: bool = True,
    ) -> TensorBatches:
        """Batches of `images` rows `rows` (uint8 [N, 3, H, W]) with `fields`, in `order`, on the
        trainer's device; training batches are augmented there (see lfm.data.batching)."""
        return trainer_batches(
            self.trainer,
            images,
            rows,
            fields,
            order,
            batch_size,
            augment=self.augmentation if train else None,
            generator=self.augment_generator,
            shard=shard,
        )

    def pil_loader(self, dataset: Dataset, batch_size: int, **options) -> DataLoader:
        """A DataLoader whose `num_workers` processes transform each image; `options` are
        DataLoader's (shuffle, sampler, drop_last).

        Workers do not outlive their epoch: each epoch's workers are seeded from the global
        random state, which checkpoints carry, so a resumed run draws the same augmentations.
        """
        return DataLoader(dataset, batch_size=batch_size, num_workers=self.num_workers, **options)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """PIL pipeline: the batch transforms on each training batch, once it is on the model's
        device (the tensor pipeline applies them in its augmentation)."""
        if self.pipeline == "pil" and self.batch_transforms and self.trainer is not None and self.trainer.training:
            generator = self.augment_generator.get(batch["image"].device, self.trainer.global_rank)
            batch["image"] = apply_batch_transforms(self.batch_transforms, batch["image"], generator)
        return batch

    def state_dict(self) -> dict:
        return self.augment_generator.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.augment_generator.load_state_dict(state_dict)
