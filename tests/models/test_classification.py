"""The classification network: CIFAR stem, LFM after it, logits."""

import pytest
import torch
from torch import nn

from lfm.errors import InputError
from lfm.models.classification import ClassificationNet

LFM = {"after": "conv1", "p": 1.0, "mask_ratio": 0.5, "area": [0.1, 0.4], "aspect": [0.3, 3.3], "fill": "zero"}


def test_small_input_stem_keeps_32x32_resolution_and_lfm_masks_it():
    torch.manual_seed(0)
    net = ClassificationNet("resnet18", num_classes=10, lfm=LFM, small_input=True)
    conv1 = net.backbone.conv1
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1) and isinstance(net.backbone.maxpool, nn.Identity)
    images = torch.rand(2, 3, 32, 32)
    assert net.backbone.layer4(
        net.backbone.layer3(
            net.backbone.layer2(net.backbone.layer1(net.backbone.relu(net.backbone.bn1(conv1(images)))))
        )
    ).shape[-2:] == (4, 4)
    net.train()
    trained = net(images)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(images), net(images)) and net(images).shape == (2, 10)
    assert not torch.allclose(trained, net(images))


def test_small_input_stem_is_only_for_resnets():
    with pytest.raises(InputError, match="model.small_input"):
        ClassificationNet("mobilenet_v3_large", num_classes=10, small_input=True)
