"""The trunk that the re-ID and the classification networks share: normalisation, a backbone
with LFM or another feature regularizer inserted, and global average pooling."""

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from lfm.models.backbones import build_backbone, load_pretrained, use_small_input_stem
from lfm.models.regularizers import attach_feature_regularizers


class BackboneNet(nn.Module):
    """Images in [0, 1] -> normalisation by `mean` and `std` -> backbone -> pooled features.

    The backbone (a name, or an entry with `_target_`: lfm.models.backbones.build_backbone) gets
    its pretrained weights, then (with `small_input`) the CIFAR stem, then the feature
    regularizers: the entries of `regularizers` and the built-in `lfm`, `dropout2d` and
    `dropblock` (None = off; lfm.models.regularizers). ReIDNet and ClassificationNet put their
    heads on `pooled_features`.
    """

    def __init__(
        self,
        backbone: str | Mapping,
        mean: Sequence[float],
        std: Sequence[float],
        pretrained: bool | str,
        lfm: Mapping | None,
        dropout2d: Mapping | None,
        dropblock: Mapping | None,
        last_stride: int = 2,
        small_input: bool = False,
        regularizers: Mapping | None = None,
    ):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.backbone = build_backbone(backbone, last_stride)
        load_pretrained(self.backbone, backbone, pretrained)
        if small_input:
            use_small_input_stem(self.backbone, backbone)
        self.regularizers = attach_feature_regularizers(
            self.backbone, regularizers, lfm=lfm, dropout2d=dropout2d, dropblock=dropblock
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, backbone.out_channels] features of images [B, 3, H, W] in [0, 1]."""
        return self.pool(self.backbone((images - self.mean) / self.std)).flatten(1)
