"""IBN-Net-a ResNets (Pan et al., "Two at Once: Enhancing Learning and Generalization Capacities
via IBN-Net", ECCV 2018): a ResNet whose bottlenecks in stages 1-3 normalise the first half of
the channels of their first norm with InstanceNorm and the rest with BatchNorm.

Module names follow the authors' release (XingangPan/IBN-Net, `resnet_ibn.py`), so their
ImageNet files load as they are: `layer1.0.bn1.IN.weight`, `layer1.0.bn1.BN.running_mean`, ...
"""

import torch
from torch import nn

# the authors' v1.0 release (XingangPan/IBN-Net on GitHub), fetched as their code does
IBN_A_RELEASE_URL = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0"
# name -> (the torchvision ResNet it is built on, the file name of the authors' v1.0 release)
IBN_A_RESNETS = {
    "resnet50_ibn_a": ("resnet50", "resnet50_ibn_a-d9d0bb7b.pth"),
    "resnet101_ibn_a": ("resnet101", "resnet101_ibn_a-59ea0ac6.pth"),
}
IBN_A_STAGES = ("layer1", "layer2", "layer3")


class InstanceBatchNorm2d(nn.Module):
    """InstanceNorm (affine) on the first `int(channels * ratio)` channels, BatchNorm on the rest."""

    def __init__(self, channels: int, ratio: float = 0.5):
        super().__init__()
        self.half = int(channels * ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        instance_part, batch_part = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat((self.IN(instance_part.contiguous()), self.BN(batch_part.contiguous())), dim=1)


def use_ibn_a(resnet: nn.Module) -> None:
    """Turn a torchvision ResNet into its IBN-a form, in place: `bn1` of every bottleneck of
    layer1..layer3 becomes an InstanceBatchNorm2d (layer4 and the stem keep BatchNorm)."""
    for stage in IBN_A_STAGES:
        for block in getattr(resnet, stage):
            block.bn1 = InstanceBatchNorm2d(block.bn1.num_features)
