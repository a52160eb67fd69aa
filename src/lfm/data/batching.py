"""Batches gathered by index from a uint8 image tensor: the tensor pipeline's loader.

No worker processes and no per-sample Python: each batch is one index_select from the
decoded-image cache (into pinned memory when the model is on a GPU), moved to the model's
device without blocking, then converted to float there (with the training augmentation on
training batches). Under DDP each rank takes every world_size-th training batch of the epoch's
order, and every world_size-th sample of an evaluation set.
"""

from collections.abc import Callable, Iterator, Mapping

import torch

from lfm.data.augment import to_float
from lfm.runs.randomness import derived_seed

AUGMENT_STREAM = 2
PIPELINES = ("tensor", "pil")  # data.pipeline: batches from decoded tensors, or per-image PIL loading


class TensorBatches:
    """Iterable of batch dicts: `image` (float [B, 3, H, W] in [0, 1], on `device`) plus one
    entry per `fields` tensor (label, pid, ...), for the positions `order` gives each epoch.

    `images[rows[i]]` is the image of position i; `fields` are indexed by position;
    `order` is an epoch order of lfm.data.samplers (positions(), set_epoch(), len()).
    `augment(images, generator)` (uint8 in, float out) is applied when given, with `generator()`
    returning the generator to draw from (on `device`). Lightning calls `sampler.set_epoch`.
    """

    def __init__(
        self,
        images: torch.Tensor,
        rows: torch.Tensor,
        fields: Mapping[str, torch.Tensor],
        order,
        batch_size: int,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        generator: Callable[[], torch.Generator] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.images, self.rows, self.fields = images, rows, dict(fields)
        self.sampler, self.batch_size, self.drop_last = order, batch_size, drop_last
        self.batch_sampler = None  # read by Lightning, which takes `sampler` for the epoch order
        self.device = torch.device(device)
        self.augment, self.generator = augment, generator
        self.rank, self.world_size = rank, world_size
        self.pin = self.device.type == "cuda" and images.device.type == "cpu"

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size // self.world_size
        return -(-len(range(self.rank, len(self.sampler), self.world_size)) // self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        order = self.sampler.positions()
        if self.drop_last:  # whole batches per rank, so P x K batches stay intact
            starts = ((number * self.world_size + self.rank) * self.batch_size for number in range(len(self)))
        else:  # every world_size-th sample, so each rank gets some of even a small set
            order = order[self.rank :: self.world_size]
            starts = (number * self.batch_size for number in range(len(self)))
        for start in starts:
            yield self._batch(order[start : start + self.batch_size])

    def _batch(self, chosen: torch.Tensor) -> dict:
        rows = self.rows[chosen]
        if self.pin:
            images = torch.empty((len(rows), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=True)
            torch.index_select(self.images, 0, rows, out=images)
        else:
            images = self.images.index_select(0, rows.to(self.images.device))
        images = images.to(self.device, non_blocking=True)
        batch = {name: values[chosen].to(self.device, non_blocking=True) for name, values in self.fields.items()}
        batch["image"] = self.augment(images, self.generator()) if self.augment is not None else to_float(images)
        return batch


class AugmentationGenerator:
    """The training augmentation's random generator, on the model's device: seeded from
    (seed, rank) on first use, or continuing the state a checkpoint carried (DataModules save
    it with `state_dict`; checkpoints hold rank 0's, which other ranks continue offset by rank)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.generator: torch.Generator | None = None
        self.restored: torch.Tensor | None = None

    def get(self, device: torch.device, rank: int) -> torch.Generator:
        if self.generator is None or self.generator.device != device:
            generator = torch.Generator(device).manual_seed(derived_seed(self.seed, rank, AUGMENT_STREAM))
            if self.restored is not None:
                generator.set_state(self.restored)
                if rank > 0:
                    generator.manual_seed(
                        derived_seed(int(torch.randint(2**62, (), generator=generator, device=device)), rank)
                    )
                self.restored = None
            self.generator = generator
        return self.generator

    def state_dict(self) -> dict:
        state = self.generator.get_state() if self.generator is not None else self.restored
        return {"augment_generator": state} if state is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self.restored, self.generator = state_dict.get("augment_generator"), None


def trainer_batches(
    trainer,
    images: torch.Tensor,
    rows: torch.Tensor,
    fields: Mapping[str, torch.Tensor],
    order,
    batch_size: int,
    augment: Callable | None = None,
    generator: AugmentationGenerator | None = None,
    shard: bool = True,
) -> TensorBatches:
    """TensorBatches on the device of `trainer` (CPU without one), sharded over its DDP ranks
    if `shard`; with `augment`, a training loader (drops the last partial batch)."""
    device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
    rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None and shard else (0, 1)
    draw = (lambda: generator.get(device, trainer.global_rank if trainer is not None else 0)) if augment else None
    return TensorBatches(
        images,
        rows,
        fields,
        order,
        batch_size,
        drop_last=augment is not None,
        device=device,
        augment=augment,
        generator=draw,
        rank=rank,
        world_size=world_size,
    )
