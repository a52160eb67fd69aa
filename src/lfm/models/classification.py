"""Image classification (CIFAR) with the same backbones and feature regularizers (LFM, ...)
as re-ID: a network and its LightningModule."""

from collections.abc import Mapping

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from lfm.metrics.classification import SampleAccuracy
from lfm.models.losses import check_label_smoothing
from lfm.models.optimization import build_optimizer
from lfm.models.trunk import BackboneNet

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class ClassificationNet(BackboneNet):
    """Images in [0, 1] -> normalisation -> backbone (LFM etc. inserted) -> pooling -> logits."""

    def __init__(
        self,
        backbone: str | Mapping,
        num_classes: int,
        lfm: Mapping | None = None,
        pretrained: bool | str = False,
        small_input: bool = True,
        dropout2d: Mapping | None = None,
        dropblock: Mapping | None = None,
        regularizers: Mapping | None = None,
    ):
        super().__init__(
            backbone,
            CIFAR_MEAN,
            CIFAR_STD,
            pretrained,
            lfm,
            dropout2d,
            dropblock,
            small_input=small_input,
            regularizers=regularizers,
        )
        self.classifier = nn.Linear(self.backbone.out_channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pooled_features(images))


class ClassificationModule(L.LightningModule):
    """Trains a ClassificationNet with cross-entropy; reports accuracy (val/accuracy, test/accuracy)."""

    def __init__(
        self,
        *,
        backbone: str | Mapping,
        num_classes: int,
        lfm: Mapping | None = None,
        pretrained: bool | str = False,
        small_input: bool = True,
        dropout2d: Mapping | None = None,
        dropblock: Mapping | None = None,
        regularizers: Mapping | None = None,
        label_smoothing: float = 0.0,
        optimizer: Mapping,
        scheduler: Mapping,
    ):
        super().__init__()
        self.save_hyperparameters()
        check_label_smoothing(label_smoothing)
        self.net = ClassificationNet(
            backbone, num_classes, lfm, pretrained, small_input, dropout2d, dropblock, regularizers
        )
        self.accuracy = nn.ModuleDict({"val": SampleAccuracy(), "test": SampleAccuracy()})
        self.test_results: dict = {}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.net(batch["image"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(dim=1) == batch["label"]).float().mean(), prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.accuracy["val"].update(self.net(batch["image"]), batch["label"], batch["index"])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.accuracy["test"].update(self.net(batch["image"]), batch["label"], batch["index"])

    def _accuracy(self, stage: str) -> float:
        accuracy = self.accuracy[stage].compute()
        self.accuracy[stage].reset()
        return accuracy

    def on_validation_epoch_end(self) -> None:
        self.log("val/accuracy", self._accuracy("val"), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        accuracy = self._accuracy("test")
        self.log("test/accuracy", accuracy)
        self.test_results = {"accuracy": accuracy}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["task"] = "classification"

    def configure_optimizers(self):
        return build_optimizer(self.net, self.hparams.optimizer, self.hparams.scheduler, self.trainer.max_epochs)
