"""Lightning callbacks for LFM: attach it to a model without changing its code, schedule it,
and log what it masks."""

import time
from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lfm.errors import InputError
from lfm.masking import LocalFeatureMasking
from lfm.models.regularizers import BUILT_IN_REGULARIZERS, attach_feature_regularizer
from lfm.targets import TARGET_KEY

CONFIG_KEY = "callbacks.lfm"


def insertion_label(module_name: str) -> str:
    """'net.regularizers.lfm.layer2__1' -> 'layer2.1': the insertion point of an inserted module."""
    return module_name.rsplit(".", 1)[-1].replace("__", ".")


class MaskedFractionMonitor(Callback):
    """Log, for every LocalFeatureMasking in the model, the fraction of feature values it
    masked in each training step (`train/lfm_masked_fraction/<insertion point>`) next to the
    fraction its settings ask for (`train/lfm_expected_fraction/<insertion point>`)."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        for name, module in pl_module.named_modules():
            if isinstance(module, LocalFeatureMasking) and module.masked_fraction is not None:
                label = insertion_label(name)
                pl_module.log(f"train/lfm_masked_fraction/{label}", module.masked_fraction, on_step=True, on_epoch=True)
                pl_module.log(
                    f"train/lfm_expected_fraction/{label}", module.expected_fraction, on_step=True, on_epoch=True
                )


class LocalFeatureMaskingCallback(Callback):
    """Attach LFM to `pl_module.<backbone>` at fit start, without changing the model's code.

    `after` and `**settings` are those of `model.lfm` (the same op is inserted the same
    way). With `warmup_epochs` > 0, `p` and `mask_ratio` grow linearly from 0 at epoch 0 to
    their set values at epoch `warmup_epochs`.
    """

    def __init__(self, after: str | Sequence[str], backbone: str = "net.backbone", warmup_epochs: int = 0, **settings):
        super().__init__()
        if warmup_epochs < 0:
            raise InputError(f"{CONFIG_KEY}.warmup_epochs must be >= 0, got {warmup_epochs}")
        try:
            self.full_strength = LocalFeatureMasking(**settings)
        except (TypeError, ValueError) as error:
            raise InputError(f"invalid {CONFIG_KEY} setting: {error}") from None
        self.after, self.backbone, self.warmup_epochs, self.settings = after, backbone, warmup_epochs, settings
        self.modules = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.modules is not None:
            return
        try:
            backbone = pl_module.get_submodule(self.backbone)
        except AttributeError:
            raise InputError(
                f"{CONFIG_KEY}.backbone={self.backbone!r} is not a submodule of {type(pl_module).__name__}"
            ) from None
        entry = {TARGET_KEY: BUILT_IN_REGULARIZERS["lfm"], "after": self.after, **self.settings}
        self.modules = attach_feature_regularizer(backbone, entry, CONFIG_KEY)
        pl_module.lfm_callback = self.modules

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        factor = min(1.0, trainer.current_epoch / self.warmup_epochs) if self.warmup_epochs else 1.0
        for module in self.modules.values():
            module.p = factor * self.full_strength.p
            module.mask_ratio = factor * self.full_strength.mask_ratio


class TrainingSpeedMonitor(Callback):
    """Log each epoch's training speed, `train/images_per_second`: the images of its training
    batches after the first `skip_batches` over the wall time from the start of batch
    `skip_batches` to the end of the last (loading, augmentation and the steps; not validation),
    and `train/epoch_seconds`, the wall time of all its training batches."""

    def __init__(self, skip_batches: int = 3):
        super().__init__()
        self.skip_batches = skip_batches
        self.epoch_start = self.end = 0.0
        self.start: float | None = None
        self.images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start, self.images = None, 0
        self.epoch_start = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == self.skip_batches:
            _synchronize(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if self.start is None:
            return
        self.images += len(batch["image"])
        if batch_idx == trainer.num_training_batches - 1:
            _synchronize(pl_module.device)
        self.end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start is not None and self.images:
            pl_module.log("train/images_per_second", self.images / (self.end - self.start))
            pl_module.log("train/epoch_seconds", self.end - self.epoch_start)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
