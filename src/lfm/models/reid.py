"""The re-ID network and its LightningModule (training, validation and test ranking)."""

import math
from collections.abc import Mapping

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from lfm.errors import InputError
from lfm.metrics.distance import DISTANCES
from lfm.metrics.reid import ReIDRankingMetric
from lfm.metrics.rerank import RerankSettings
from lfm.models.backbones import build_backbone, load_pretrained
from lfm.models.heads import ReIDHead
from lfm.models.losses import batch_hard_triplet_loss
from lfm.models.regularizers import attach_feature_regularizers

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANKING_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")
AP_DEFINITIONS = ("standard", "trapezoid")


class ReIDNet(nn.Module):
    """Images in [0, 1] -> normalisation -> backbone (with LFM or another feature regularizer
    inserted) -> pooling -> head."""

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        lfm: Mapping | None = None,
        pretrained: bool | str = False,
        last_stride: int = 2,
        embedding_dim: int | None = 512,
        dropout: float = 0.5,
        dropout2d: Mapping | None = None,
        dropblock: Mapping | None = None,
    ):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = build_backbone(backbone, last_stride)
        load_pretrained(self.backbone, backbone, pretrained)
        self.regularizers = attach_feature_regularizers(
            self.backbone, lfm=lfm, dropout2d=dropout2d, dropblock=dropblock
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = ReIDHead(self.backbone.out_channels, num_classes, embedding_dim, dropout)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feature_map = self.backbone((images - self.mean) / self.std)
        pooled = self.pool(feature_map).flatten(1)
        embedding, logits = self.head(pooled)
        return {"pooled": pooled, "embedding": embedding, "logits": logits}

    def retrieval_features(self, images: torch.Tensor, flip: bool = True) -> torch.Tensor:
        """The evaluation feature: the embedding, averaged with the mirrored image's if `flip`."""
        features = self(images)["embedding"]
        if flip:
            features = (features + self(images.flip(-1))["embedding"]) / 2
        return features


class ReIDModule(L.LightningModule):
    """Trains a ReIDNet with cross-entropy (+ optional triplet) and ranks query vs gallery.

    Validation and test batches are dicts with image, pid, camid, is_query and index; the
    ranking metric gathers all features (correct under DDP) and reports CMC, mAP and mINP.
    With `rerank`, the test also reports them on the k-reciprocal re-ranked distance
    (`test/rerank/<metric>`; `rerank_settings`: k1, k2, lambda_value, the published defaults
    when null). `test_prefix` names the logged test metrics; with `keep_test_features` the
    test's gathered samples stay in `test_features` (for a feature file).
    """

    def __init__(
        self,
        *,
        backbone: str,
        num_classes: int,
        lfm: Mapping | None = None,
        pretrained: bool | str = False,
        last_stride: int = 2,
        embedding_dim: int | None = 512,
        dropout: float = 0.5,
        dropout2d: Mapping | None = None,
        dropblock: Mapping | None = None,
        label_smoothing: float = 0.0,
        triplet_weight: float = 0.0,
        triplet_margin: float = 0.3,
        optimizer: Mapping,
        scheduler: Mapping,
        distance: str = "cosine",
        flip_test: bool = True,
        ap: str = "standard",
        rerank: bool = False,
        rerank_settings: Mapping | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 <= label_smoothing < 1.0:
            raise InputError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        if triplet_weight < 0:
            raise InputError(f"model.triplet_weight must be >= 0, got {triplet_weight}")
        rerank_settings = check_evaluation_settings(distance=distance, ap=ap, rerank_settings=rerank_settings)
        self.net = ReIDNet(
            backbone, num_classes, lfm, pretrained, last_stride, embedding_dim, dropout, dropout2d, dropblock
        )
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        if compile:
            self.net.compile()  # in place: parameter names, checkpoints and hooks stay as they are
        self.val_ranking = ReIDRankingMetric(distance=distance, ap=ap)
        self.test_ranking = ReIDRankingMetric(distance=distance, ap=ap, rerank=rerank_settings if rerank else None)
        self.best_val_map = 0.0
        self.test_prefix = "test"
        self.keep_test_features = False
        self.test_features: dict[str, torch.Tensor] | None = None
        self.test_results: dict = {}

    def images(self, batch: dict) -> torch.Tensor:
        """The batch's images, in the network's memory format."""
        if self.hparams.channels_last:
            return batch["image"].contiguous(memory_format=torch.channels_last)
        return batch["image"]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        outputs = self.net(self.images(batch))
        cross_entropy = F.cross_entropy(outputs["logits"], batch["label"], label_smoothing=self.hparams.label_smoothing)
        loss = cross_entropy
        self.log("train/ce", cross_entropy, prog_bar=False)
        if self.hparams.triplet_weight > 0:
            triplet = batch_hard_triplet_loss(outputs["pooled"], batch["label"], self.hparams.triplet_margin)
            loss = loss + self.hparams.triplet_weight * triplet
            self.log("train/triplet", triplet)
        accuracy = (outputs["logits"].argmax(dim=1) == batch["label"]).float().mean()
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", accuracy, prog_bar=True)
        return loss

    def _update_ranking(self, metric: ReIDRankingMetric, batch: dict) -> None:
        features = self.net.retrieval_features(self.images(batch), flip=self.hparams.flip_test)
        metric.update(features, batch["pid"], batch["camid"], batch["is_query"], batch["index"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._update_ranking(self.val_ranking, batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._update_ranking(self.test_ranking, batch)

    def on_validation_epoch_end(self) -> None:
        results = self.val_ranking.compute()
        self.val_ranking.reset()
        if not self.trainer.sanity_checking:
            self.best_val_map = max(self.best_val_map, results["mAP"])
        for key in RANKING_KEYS:
            self.log(f"val/{key}", results[key], prog_bar=key in ("rank1", "mAP"))
        self.log("val/mAP_best", self.best_val_map)

    def on_test_epoch_end(self) -> None:
        results = self.test_ranking.compute()
        if self.keep_test_features:
            self.test_features = {name: value.cpu() for name, value in self.test_ranking.gathered().items()}
        self.test_ranking.reset()
        reranked = results.get("rerank", {})
        for key in RANKING_KEYS:
            self.log(f"{self.test_prefix}/{key}", results[key])
            if reranked:
                self.log(f"{self.test_prefix}/rerank/{key}", reranked[key])
        self.test_results = {
            **{key: float(results[key]) for key in RANKING_KEYS},
            **{f"rerank/{key}": float(reranked[key]) for key in RANKING_KEYS if reranked},
            "cmc": [float(value) for value in results["cmc"]],
            "num_valid_queries": int(results["num_valid_queries"]),
            "ap": self.hparams.ap,
            "distance": self.hparams.distance,
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["best_val_map"] = self.best_val_map

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.best_val_map = checkpoint.get("best_val_map", 0.0)

    def configure_optimizers(self):
        return build_optimizer(self.net, self.hparams.optimizer, self.hparams.scheduler, self.trainer.max_epochs)


def check_rerank_settings(settings: Mapping | None) -> dict:
    """`model.rerank_settings` as keyword arguments of the re-ranking (the published defaults when null)."""
    settings = dict(settings or {})
    try:
        RerankSettings(**settings)
    except (TypeError, ValueError) as error:
        raise InputError(f"model.rerank_settings: {error}; its keys are k1, k2, lambda_value") from None
    return settings


def check_evaluation_settings(
    distance: str = "cosine", ap: str = "standard", rerank_settings: Mapping | None = None, **_
) -> dict:
    """Refuse a bad model.distance, model.ap or model.rerank_settings; the re-ranking's keyword arguments."""
    if distance not in DISTANCES:
        raise InputError(f"model.distance must be one of {DISTANCES}, got {distance!r}")
    if ap not in AP_DEFINITIONS:
        raise InputError(f"model.ap must be one of {AP_DEFINITIONS}, got {ap!r}")
    return check_rerank_settings(rerank_settings)


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("step", "cosine", "constant")


def build_optimizer(net: ReIDNet, optimizer: Mapping, scheduler: Mapping, max_epochs: int) -> dict:
    """Optimizer with a backbone learning-rate multiplier, and a per-epoch LR schedule.

    `optimizer`: name (sgd | adam | adamw), lr, weight_decay, momentum, nesterov,
    backbone_lr_mult. `scheduler`: name (step | cosine | constant), milestones, gamma,
    warmup_epochs (linear warm-up from warmup_factor * lr).
    """
    name = optimizer["name"]
    if name not in OPTIMIZERS:
        raise InputError(f"model.optimizer.name must be one of {OPTIMIZERS}, got {name!r}")
    if scheduler["name"] not in SCHEDULERS:
        raise InputError(f"model.scheduler.name must be one of {SCHEDULERS}, got {scheduler['name']!r}")
    lr = optimizer["lr"]
    if not lr > 0:
        raise InputError(f"model.optimizer.lr must be > 0, got {lr}")
    backbone_params = list(net.backbone.parameters())
    backbone_ids = {id(param) for param in backbone_params}
    head_params = [param for param in net.parameters() if id(param) not in backbone_ids]
    groups = [
        {"params": backbone_params, "lr": lr * optimizer.get("backbone_lr_mult", 1.0)},
        {"params": head_params, "lr": lr},
    ]
    weight_decay = optimizer.get("weight_decay", 0.0)
    try:
        if name == "sgd":
            opt = torch.optim.SGD(
                groups,
                lr=lr,
                momentum=optimizer.get("momentum", 0.9),
                nesterov=optimizer.get("nesterov", True),
                weight_decay=weight_decay,
            )
        else:
            opt_class = torch.optim.Adam if name == "adam" else torch.optim.AdamW
            opt = opt_class(groups, lr=lr, weight_decay=weight_decay)
    except ValueError as error:  # torch names the argument: "Invalid momentum value: -1"
        raise InputError(f"invalid model.optimizer setting: {error}") from None
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_factor(epoch, scheduler, max_epochs))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}


def lr_factor(epoch: int, scheduler: Mapping, max_epochs: int) -> float:
    """Multiplier of the base learning rate at `epoch` (warm-up times the decay)."""
    warmup_epochs = scheduler.get("warmup_epochs", 0)
    warmup = 1.0
    if epoch < warmup_epochs:
        start = scheduler.get("warmup_factor", 0.1)
        warmup = start + (1.0 - start) * epoch / warmup_epochs
    if scheduler["name"] == "step":
        passed = sum(epoch >= milestone for milestone in scheduler.get("milestones", []))
        decay = scheduler.get("gamma", 0.1) ** passed
    elif scheduler["name"] == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * min(epoch, max_epochs) / max(max_epochs, 1)))
    else:
        decay = 1.0
    return warmup * decay
