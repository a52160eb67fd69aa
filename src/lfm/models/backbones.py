"""torchvision CNN backbones as feature extractors, with optional local ImageNet weights."""

from pathlib import Path

import torch
import torchvision
from torch import nn

from lfm.errors import InputError

RESNETS = {
    "resnet18": (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (torchvision.models.resnet34, torchvision.models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
}


class ResNetFeatures(nn.Module):
    """A torchvision ResNet up to `layer4`, returning the [B, C, h, w] feature map.

    Submodule names are torchvision's (conv1, bn1, relu, maxpool, layer1..layer4), so
    insertion points and pretrained weights use the names people know.
    """

    def __init__(self, name: str, last_stride: int = 2):
        super().__init__()
        if name not in RESNETS:
            raise InputError(
                f"unknown backbone {name!r} (key model.backbone); choose one of {sorted(RESNETS)}"
            )
        if last_stride not in (1, 2):
            raise InputError(f"model.last_stride must be 1 or 2, got {last_stride}")
        resnet = RESNETS[name][0](weights=None)
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


def imagenet_weights_path(name: str) -> Path:
    """Where torchvision keeps the ImageNet weights of `name` in the torch hub cache."""
    url = RESNETS[name][1].url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_pretrained(backbone: ResNetFeatures, name: str, pretrained: bool | str) -> None:
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
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(f"cannot read pretrained weights {path} (key model.pretrained): {error}") from None
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            f"pretrained weights {path} do not fit {name} (key model.pretrained): "
            f"{len(missing)} missing and {len(unexpected)} unexpected keys, e.g. {(missing + unexpected)[:3]}"
        )
