"""The re-ID network and its LightningModule (training, validation and test ranking)."""

from collections.abc import Mapping

import lightning as L
import torch
import torch.nn.functional as F

from lfm.errors import InputError
from lfm.metrics.distance import DISTANCES
from lfm.metrics.reid import AP_DEFINITIONS, ReIDRankingMetric
from lfm.metrics.rerank import RerankSettings
from lfm.models.heads import ReIDHead
from lfm.models.losses import batch_hard_triplet_loss, check_label_smoothing
from lfm.models.optimization import build_optimizer
from lfm.models.trunk import BackboneNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANKING_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")


class ReIDNet(BackboneNet):
    """Images in [0, 1] -> normalisation -> backbone (with LFM or another feature regularizer
    inserted) -> pooling -> head."""

    def __init__(
        self,
        backbone: str | Mapping,
        num_classes: int,
        lfm: Mapping | None = None,
        pretrained: bool | str = False,
        last_stride: int = 2,
        embedding_dim: int | None = 512,
        dropout: float = 0.5,
        dropout2d: Mapping | None = None,
        dropblock: Mapping | None = None,
        regularizers: Mapping | None = None,
    ):
        super().__init__(
            backbone,
            IMAGENET_MEAN,
            IMAGENET_STD,
            pretrained,
            lfm,
            dropout2d,
            dropblock,
            last_stride=last_stride,
            regularizers=regularizers,
        )
        self.head = ReIDHead(self.backbone.out_channels, num_classes, embedding_dim, dropout)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.pooled_features(images)
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
        backbone: str | Mapping,
        num_classes: int,
        lfm: Mapping | None = None,
        pretrained: bool | str = False,
        last_stride: int = 2,
        embedding_dim: int | None = 512,
        dropout: float = 0.5,
        dropout2d: Mapping | None = None,
        dropblock: Mapping | None = None,
        regularizers: Mapping | None = None,
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
        check_label_smoothing(label_smoothing)
        if triplet_weight < 0:
            raise InputError(f"model.triplet_weight must be >= 0, got {triplet_weight}")
        rerank_settings = check_evaluation_settings(distance=distance, ap=ap, rerank_settings=rerank_settings)
        self.net = ReIDNet(
            backbone,
            num_classes,
            lfm,
            pretrained,
            last_stride,
            embedding_dim,
            dropout,
            dropout2d,
            dropblock,
            regularizers,
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
