"""torchvision CNN backbones as feature extractors, with optional local ImageNet weights.

Submodule names are torchvision's, so insertion points and pretrained weights use the names
people know: ResNets expose conv1, bn1, relu, maxpool, layer1..layer4 (blocks layer1.0, ...);
the other families expose their `features` stack (features.0, features.1, ...).
"""

from pathlib import Path

import torch
import torchvision
from torch import nn

from lfm.errors import InputError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
FEATURE_STACKS = ("mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vgg16_bn")
BACKBONES = RESNETS + FEATURE_STACKS
CLASSIFIER_KEYS = ("fc.", "classifier.")


class ResNetFeatures(nn.Module):
    """A torchvision ResNet up to `layer4`, returning the [B, C, h, w] feature map."""

    def __init__(self, name: str, last_stride: int = 2):
        super().__init__()
        resnet = torchvision.models.get_model(name, weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        if last_stride == 1:
            block = self.layer4[0]
            strided_conv = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
            strided_conv.stride = (1, 1)
            block.downsample[0].stride = (1, 1)
        self.out_channels = resnet.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class FeatureStackFeatures(nn.Module):
    """The `features` stack of a torchvision CNN (MobileNetV3, EfficientNet, ConvNeXt, VGG)."""

    def __init__(self, name: str):
        super().__init__()
        self.features = torchvision.models.get_model(name, weights=None).features
        last_conv = [module for module in self.features.modules() if isinstance(module, nn.Conv2d)][-1]
        self.out_channels = last_conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def build_backbone(name: str, last_stride: int = 2) -> nn.Module:
    """The feature extractor `name` (see BACKBONES), with an `out_channels` attribute."""
    if name not in BACKBONES:
        raise InputError(f"unknown backbone {name!r} (key model.backbone); choose one of {list(BACKBONES)}")
    if last_stride not in (1, 2):
        raise InputError(f"model.last_stride must be 1 or 2, got {last_stride}")
    if name in RESNETS:
        return ResNetFeatures(name, last_stride)
    if last_stride != 2:
        raise InputError(f"model.last_stride=1 is only available for ResNets, not {name}; set model.last_stride=2")
    return FeatureStackFeatures(name)


def imagenet_weights_path(name: str) -> Path:
    """Where torchvision keeps the ImageNet (IMAGENET1K_V1) weights of `name` in the torch hub cache."""
    url = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"].url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_pretrained(backbone: nn.Module, name: str, pretrained: bool | str) -> None:
    """Load ImageNet weights from the hub cache (`True`) or a file path; never downloads."""
    if pretrained is False or pretrained is None:
        return
    path = imagenet_weights_path(name) if pretrained is True else Path(str(pretrained)).expanduser()
    if not path.is_file():
        raise InputError(
            f"pretrained weights for {name} not found at {path} (key model.pretrained); they cannot "
            f"be downloaded here: copy the torchvision file there, set model.pretrained=/path/to/weights.pth, "
            f"or train from scratch with model.pretrained=false"
        )
    # on the meta device (pipeline.check_config, at start-up) only the names and shapes are read
    location = "meta" if next(backbone.parameters()).is_meta else "cpu"
    try:
        state = torch.load(path, map_location=location, weights_only=True)
    except Exception as error:
        raise InputError(f"cannot read pretrained weights {path} (key model.pretrained): {error}") from None
    state = {key: value for key, value in state.items() if not key.startswith(CLASSIFIER_KEYS)}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            f"pretrained weights {path} do not fit {name} (key model.pretrained): "
            f"{len(missing)} missing and {len(unexpected)} unexpected keys, e.g. {(missing + unexpected)[:3]}"
        )
