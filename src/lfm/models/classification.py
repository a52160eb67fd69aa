"""Image classification (CIFAR) with the same backbones and feature regularizers (LFM, ...)
as re-ID: a network and its LightningModule."""

from collections.abc import Mapping

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from lfm.errors import InputError
from lfm.metrics.classification import SampleAccuracy
from lfm.models.backbones import RESNETS, build_backbone, load_pretrained
from lfm.models.ibn import IBN_A_RESNETS
from lfm.models.regularizers import attach_feature_regularizers
from lfm.models.reid import build_optimizer

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def use_small_input_stem(backbone: nn.Module, name: str) -> None:
    """The CIFAR ResNet stem: conv1 3x3 stride 1 and no max-pool, for 32 x 32 inputs."""
    resnets = RESNETS + tuple(IBN_A_RESNETS)
    if name not in resnets:
        raise InputError(
            f"model.small_input is only available for ResNets ({list(resnets)}), not {name}; set model.small_input=false"
        )
    backbone.conv1 = nn.Conv2d(3, backbone.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    backbone.maxpool = nn.Identity()


class ClassificationNet(nn.Module):
    """Images in [0, 1] -> normalisation -> backbone (LFM etc. inserted) -> pooling -> logits."""

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        lfm: Mapping | None = None,
        pretrained: bool | str = False,
        small_input: bool = True,
        dropout2d: Mapping | None = None,
        dropblock: Mapping | None = None,
    ):
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = build_backbone(backbone)
        load_pretrained(self.backbone, backbone, pretrained)
        if small_input:
            use_small_input_stem(self.backbone, backbone)
        self.regularizers = attach_feature_regularizers(
            self.backbone, lfm=lfm, dropout2d=dropout2d, dropblock=dropblock
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.backbone.out_channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.backbone((images - self.mean) / self.std)).flatten(1))


class ClassificationModule(L.LightningModule):
    """Trains a ClassificationNet with cross-entropy; reports accuracy (val/accuracy, test/accuracy)."""

    def __init__(
        self,
        *,
        backbone: str,
        num_classes: int,
        lfm: Mapping | None = None,
        pretrained: bool | str = False,
        small_input: bool = True,
        dropout2d: Mapping | None = None,
        dropblock: Mapping | None = None,
        label_smoothing: float = 0.0,
        optimizer: Mapping,
        scheduler: Mapping,
    ):
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 <= label_smoothing < 1.0:
            raise InputError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.net = ClassificationNet(backbone, num_classes, lfm, pretrained, small_input, dropout2d, dropblock)
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
