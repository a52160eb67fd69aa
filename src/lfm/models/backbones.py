"""CNN backbones as feature extractors: torchvision's, IBN-Net-a ResNets, any timm CNN
(`timm:<name>`) and a user's network (an entry `{_target_: <import path>, <keyword arguments>}`),
with optional ImageNet weights (lfm.models.weights) or weights from a file.

Submodule names are those of the library each comes from, so insertion points and pretrained
weights use the names people know: ResNets (torchvision and IBN-a) expose conv1, bn1, relu,
maxpool, layer1..layer4 (blocks layer1.0, ...); torchvision's other families expose their
`features` stack (features.0, features.1, ...); a timm model keeps all of timm's names (its
stages are listed in its `feature_info`: layer1..layer4 for ResNets, s1..s4 for RegNets,
stages.0..3 for ConvNeXt, blocks.0..6 for EfficientNets); a user's network keeps its own names.
"""

import difflib
from collections.abc import Mapping
from itertools import chain
from pathlib import Path

import torch
import torchvision
from torch import nn

from lfm.errors import InputError
from lfm.models.ibn import IBN_A_RESNETS, use_ibn_a
from lfm.models.weights import TIMM_PREFIX, fetch_imagenet_weights, import_timm, read_weights
from lfm.targets import TARGET_KEY, build, has_target

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
FEATURE_STACKS = ("mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vgg16_bn")
BACKBONES = RESNETS + tuple(IBN_A_RESNETS) + FEATURE_STACKS
CLASSIFIER_KEYS = ("fc.", "classifier.")
BACKBONE_KEY = "model.backbone"


class ResNetFeatures(nn.Module):
    """A torchvision (or IBN-a) ResNet up to `layer4`, returning the [B, C, h, w] feature map."""

    def __init__(self, name: str, last_stride: int = 2):
        super().__init__()
        resnet = torchvision.models.get_model(IBN_A_RESNETS[name][0] if name in IBN_A_RESNETS else name, weights=None)
        if name in IBN_A_RESNETS:
            use_ibn_a(resnet)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        if last_stride == 1:
            remove_first_downsampling(self.layer4)
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


def _stride(module: nn.Module) -> int:
    """The stride of a layer (a convolution, a pool; 1 for others and for blocks, which may
    hold a `stride` attribute of their own)."""
    if next(module.children(), None) is not None:
        return 1
    stride = getattr(module, "stride", 1)
    return max(stride) if isinstance(stride, tuple) else stride


def _keeps_size_at_stride_one(module: nn.Module) -> bool:
    """A convolution with 'same' padding, or a 2 x 2 average pool (the ResNet-D shortcut)."""
    if type(module) is nn.Conv2d:
        return all(
            kernel % 2 == 1 and padding == dilation * (kernel - 1) // 2
            for kernel, padding, dilation in zip(module.kernel_size, module.padding, module.dilation)
        )
    return type(module) is nn.AvgPool2d and module.kernel_size in (2, (2, 2)) and _stride(module) == 2


def remove_first_downsampling(stage: nn.Module) -> bool:
    """Make the first block of `stage` keep its input's size (re-ID's "last stride 1"), in place:
    its stride-2 'same' convolutions get stride 1 and its 2 x 2 average-pool shortcut becomes
    the identity. Returns False, changing nothing, if the block does not downsample or does so
    in another way (a 2 x 2 convolution, an anti-aliasing blur, ...)."""
    block = next(iter(stage.children()), stage)
    strided = [(name, module) for name, module in block.named_modules() if _stride(module) != 1]
    if not strided or not all(_keeps_size_at_stride_one(module) for _, module in strided):
        return False
    for name, module in strided:
        if isinstance(module, nn.Conv2d):
            module.stride = (1, 1)
        else:
            parent, _, child = name.rpartition(".")
            setattr(block.get_submodule(parent), child, nn.Identity())
    return True


def backbone_label(backbone: str | Mapping) -> str:
    """How messages name a backbone: its name, or a user's network's import path."""
    return str(backbone[TARGET_KEY]) if has_target(backbone) else str(backbone)


def _feature_map_channels(model: nn.Module, label: str) -> int:
    """The channels of `model`'s output, from a forward pass on the meta device (shapes only,
    no computation) on a 224 x 224 stand-in (timm: the model's own input size); refuses a model
    whose output is not a [B, C, h, w] map."""
    size = tuple(getattr(model, "pretrained_cfg", {}).get("input_size", (3, 224, 224)))
    tensors = chain(model.named_parameters(), model.named_buffers())
    stand_ins = {key: torch.empty_like(value, device="meta") for key, value in tensors}
    try:
        with torch.no_grad():
            output = torch.func.functional_call(model, stand_ins, (torch.empty(2, *size, device="meta"),))
    except Exception as error:  # any failure of a third-party forward pass means: not usable here
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{label} cannot run as a backbone (key {BACKBONE_KEY}): {message}") from None
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        shape = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InputError(
            f"{label} is not a CNN: its features are {shape}, not a [B, C, h, w] map (key {BACKBONE_KEY}); "
            f"choose a convolutional network (ResNet, RegNet, EfficientNet, ConvNeXt, ...) without pooling and head"
        )
    return output.shape[1]


def build_target_backbone(entry: Mapping, last_stride: int = 2) -> nn.Module:
    """A user's network from `model.backbone={_target_: ..., <keyword arguments>}`: an nn.Module whose
    forward maps images [B, 3, H, W] to a [B, C, h, w] feature map (no pooling, no head). Its width C
    is its `out_channels` attribute if it has one, else found as for timm (a meta-device forward)."""
    if last_stride != 2:
        raise InputError(
            f"model.last_stride=1 needs a named backbone ({list(RESNETS)}, timm:<name>); a {TARGET_KEY} backbone "
            f"sets its own strides: set model.last_stride=2"
        )
    backbone = build(entry, BACKBONE_KEY, nn.Module)
    if not isinstance(getattr(backbone, "out_channels", None), int):
        backbone.out_channels = _feature_map_channels(backbone, backbone_label(entry))
    return backbone


def build_timm_backbone(name: str, last_stride: int = 2) -> nn.Module:
    """The timm CNN `name` (a timm model name, optionally with its weights tag) without its
    pooling and classifier: it returns the [B, C, h, w] map and keeps timm's module names."""
    timm = import_timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise InputError(
            f"unknown timm model {name!r} (key model.backbone={TIMM_PREFIX}{name}); {hint}"
            f"list the names with python -c \"import timm; print(timm.list_models('resnet*'))\""
        )
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    except (TypeError, ValueError, RuntimeError, AssertionError) as error:
        raise InputError(f"cannot build {TIMM_PREFIX}{name} (key model.backbone): {error}") from None
    model.out_channels = _feature_map_channels(model, f"{TIMM_PREFIX}{name}")
    stages = model.feature_info
    halves = len(stages) >= 2 and stages[-1]["reduction"] == 2 * stages[-2]["reduction"]
    if last_stride == 1 and not (halves and remove_first_downsampling(model.get_submodule(stages[-1]["module"]))):
        raise InputError(
            f"model.last_stride=1 is not available for {TIMM_PREFIX}{name}: its last stage "
            f"({stages[-1]['module']}) does not start with a stride-2 convolution that can be set to 1; "
            f"set model.last_stride=2"
        )
    return model


def build_backbone(name: str | Mapping, last_stride: int = 2) -> nn.Module:
    """The feature extractor `name` (see BACKBONES, `timm:<timm model name>`, or an entry with
    `_target_`: build_target_backbone), with an `out_channels` attribute."""
    if last_stride not in (1, 2):
        raise InputError(f"model.last_stride must be 1 or 2, got {last_stride}")
    if isinstance(name, Mapping):
        return build_target_backbone(name, last_stride)
    if name.startswith(TIMM_PREFIX):
        return build_timm_backbone(name.removeprefix(TIMM_PREFIX), last_stride)
    if name not in BACKBONES:
        raise InputError(
            f"unknown backbone {name!r} (key model.backbone); choose one of {list(BACKBONES)} "
            f"or a timm CNN as {TIMM_PREFIX}<name> (e.g. {TIMM_PREFIX}resnet50d)"
        )
    if name in RESNETS or name in IBN_A_RESNETS:
        return ResNetFeatures(name, last_stride)
    if last_stride != 2:
        raise InputError(f"model.last_stride=1 is only available for ResNets, not {name}; set model.last_stride=2")
    return FeatureStackFeatures(name)


def use_small_input_stem(backbone: nn.Module, name: str | Mapping) -> None:
    """The CIFAR ResNet stem: conv1 3x3 stride 1 and no max-pool, for 32 x 32 inputs."""
    resnets = RESNETS + tuple(IBN_A_RESNETS)
    if isinstance(name, Mapping) or name not in resnets:
        raise InputError(
            f"model.small_input is only available for ResNets ({list(resnets)}), not {backbone_label(name)}; "
            f"set model.small_input=false"
        )
    backbone.conv1 = nn.Conv2d(3, backbone.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    backbone.maxpool = nn.Identity()


def _classifier_keys(backbone: nn.Module) -> tuple[str, ...]:
    """Key prefixes of the classifier a weights file holds and the backbone does not."""
    classifier = getattr(backbone, "pretrained_cfg", {}).get("classifier") or ()
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return CLASSIFIER_KEYS + tuple(f"{name}." for name in names)


def load_pretrained(backbone: nn.Module, name: str | Mapping, pretrained: bool | str) -> None:
    """Load ImageNet weights (`True`: from the library's cache, downloaded there on first use)
    or the weights in a file (a path)."""
    if pretrained is False or pretrained is None:
        return
    if isinstance(name, Mapping) and pretrained is True:
        raise InputError(
            f"model.pretrained=true: there are no ImageNet weights to download for {backbone_label(name)} "
            f"(a {TARGET_KEY} backbone); set model.pretrained=/path/to/weights.pth or model.pretrained=false"
        )
    name = backbone_label(name)
    path = fetch_imagenet_weights(name) if pretrained is True else Path(str(pretrained)).expanduser()
    if not path.is_file():
        raise InputError(
            f"pretrained weights for {name} not found at {path} (key model.pretrained); set "
            f"model.pretrained=/path/to/weights.pth, model.pretrained=true for the ImageNet weights, "
            f"or model.pretrained=false to train from scratch"
        )
    # on the meta device (pipeline.check_config, at start-up) only the names and shapes are read
    location = "meta" if next(backbone.parameters()).is_meta else "cpu"
    try:
        state = read_weights(path, location)
    except InputError:
        raise
    except Exception as error:  # torch's and safetensors' many reasons a file is not readable weights
        raise InputError(
            f"cannot read pretrained weights {path} (key model.pretrained): {type(error).__name__}; "
            f"pass a .pth file saved with torch.save(model.state_dict(), path) or a .safetensors file"
        ) from None
    state = {key: value for key, value in state.items() if not key.startswith(_classifier_keys(backbone))}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            f"pretrained weights {path} do not fit {name} (key model.pretrained): "
            f"{len(missing)} missing and {len(unexpected)} unexpected keys, e.g. {(missing + unexpected)[:3]}"
        )
