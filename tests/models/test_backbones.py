"""Backbones beyond torchvision: any timm CNN (`timm:<name>`) and the IBN-Net-a ResNets."""

import subprocess
import sys

import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from lfm.errors import InputError
from lfm.models.backbones import build_backbone
from lfm.models.ibn import InstanceBatchNorm2d
from lfm.models.reid import ReIDNet
from lfm.models.weights import imagenet_weights_path

LFM = {"p": 1.0, "mask_ratio": 0.5, "fill": "zero"}
# three timm families, each with LFM after one of its stages (names from timm's feature_info)
TIMM_STAGES = [("timm:resnet18d", "layer1"), ("timm:regnetx_002", "s1"), ("timm:convnext_atto", "stages.0")]


def meta_backbone(name: str, last_stride: int = 2):
    with torch.device("meta"):
        return build_backbone(name, last_stride)


def stage_shapes(backbone, stages, size=(224, 224)) -> dict:
    """The [C, h, w] output of each named stage for one image, computed on the meta device."""
    shapes = {}
    for stage in stages:
        backbone.get_submodule(stage).register_forward_hook(
            lambda _m, _i, output, stage=stage: shapes.__setitem__(stage, tuple(output.shape[1:]))
        )
    backbone(torch.empty(1, 3, *size, device="meta"))
    return shapes


# ---- timm ----------------------------------------------------------------------------------


def test_timm_is_imported_only_for_a_timm_backbone():
    """Importing timm takes seconds; runs on torchvision or IBN-Net backbones never pay for it."""
    code = "import sys, lfm.models.backbones as b; b.build_backbone('resnet50_ibn_a'); print('timm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(("backbone", "stage"), TIMM_STAGES)
def test_timm_cnn_with_lfm_after_a_stage(backbone, stage):
    torch.manual_seed(0)
    net = ReIDNet(backbone, num_classes=3, embedding_dim=16, lfm={**LFM, "after": stage}).train()
    outputs = net(torch.rand(2, 3, 64, 32))
    assert outputs["pooled"].shape == (2, net.backbone.out_channels)
    assert outputs["logits"].shape == (2, 3)
    masked = net.regularizers["lfm"][stage.replace(".", "__")].masked_fraction
    assert 0.01 < masked < 0.5  # p=1, half the channels, a region of 2% to 40% of the map each


def test_timm_backbone_keeps_timm_module_names_and_feature_width():
    backbone = meta_backbone("timm:resnet50d")
    assert backbone.out_channels == 2048
    assert {"conv1.0", "bn1", "act1", "maxpool", "layer1", "layer4.2.conv3"} <= dict(backbone.named_modules()).keys()
    shapes = stage_shapes(backbone, ["layer1", "layer2", "layer3", "layer4"], size=(256, 128))
    assert shapes == {"layer1": (256, 64, 32), "layer2": (512, 32, 16), "layer3": (1024, 16, 8), "layer4": (2048, 8, 4)}


@pytest.mark.parametrize("backbone", ["timm:resnet50d", "timm:resnet18", "timm:regnetx_002"])
def test_timm_last_stride_one_doubles_the_final_map(backbone):
    images = torch.empty(1, 3, 64, 32, device="meta")
    strided, unstrided = (meta_backbone(backbone, s)(images).shape for s in (2, 1))
    assert tuple(unstrided[-2:]) == (2 * strided[-2], 2 * strided[-1])
    assert unstrided[1] == strided[1]


@pytest.mark.parametrize(
    ("backbone", "stage"), [("timm:convnext_atto", "stages.3"), ("timm:efficientnet_b0", "blocks.6")]
)
def test_timm_last_stride_one_refused_where_it_cannot_be_changed(backbone, stage):
    with pytest.raises(
        InputError, match=rf"model.last_stride=1 is not available for {backbone}: its last stage \({stage}\)"
    ):
        meta_backbone(backbone, last_stride=1)


def test_unknown_timm_model_suggests_close_names():
    with pytest.raises(
        InputError, match=r"unknown timm model 'resnet50x' \(key model.backbone=timm:resnet50x\); did you mean resnet50"
    ):
        meta_backbone("timm:resnet50x")


def test_timm_model_without_a_feature_map_is_refused():
    with pytest.raises(InputError, match=r"timm:vit_tiny_patch16_224 is not a CNN: its features are \[2, 197, 192\]"):
        meta_backbone("timm:vit_tiny_patch16_224")


def test_unknown_insertion_point_lists_timm_stages_first():
    with torch.device("meta"), pytest.raises(InputError) as error:
        ReIDNet("timm:regnetx_002", num_classes=3, lfm={**LFM, "after": "layer1"})
    assert "model.lfm.after: unknown insertion point 'layer1' for RegNet; valid names: stem, s1, s2, s3, s4, " in str(
        error.value
    )


def test_timm_weights_from_a_file_with_their_classifier(tmp_path):
    import timm

    source = timm.create_model("resnet18d", num_classes=1000)  # what timm's ImageNet files hold, fc included
    save_file(source.state_dict(), tmp_path / "weights.safetensors")
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    for path in (tmp_path / "weights.safetensors", tmp_path / "weights.pth"):
        net = ReIDNet("timm:resnet18d", num_classes=3, pretrained=str(path))
        assert torch.equal(net.backbone.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_timm_weights_from_the_hugging_face_cache(tmp_path, monkeypatch):
    """`model.pretrained=true` reads the file where timm's download would have put it."""
    import timm

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    missing = tmp_path / "models--timm--resnet18d.ra2_in1k" / "snapshots" / "<revision>" / "model.safetensors"
    assert imagenet_weights_path("timm:resnet18d") == missing
    with pytest.raises(InputError, match=f"weights of timm:resnet18d .* cache {missing.parents[2]} with `hf download"):
        ReIDNet("timm:resnet18d", num_classes=3, pretrained=True)
    repo = tmp_path / "models--timm--resnet18d.ra2_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    source = timm.create_model("resnet18d", num_classes=1000)
    save_file(source.state_dict(), repo / "snapshots" / "0123abc" / "model.safetensors")
    net = ReIDNet("timm:resnet18d", num_classes=3, pretrained=True)
    assert torch.equal(net.backbone.conv1[0].weight, source.conv1[0].weight)


# ---- IBN-Net-a -----------------------------------------------------------------------------

IBN_A_LAYERS = {"resnet50_ibn_a": (3, 4, 6, 3), "resnet101_ibn_a": (3, 4, 23, 3)}


def release_state_dict(layers: tuple[int, ...], device: str = "cpu") -> dict:
    """Random values under the keys and shapes of the IBN-Net authors' ResNet-IBN-a files
    (written from the paper's architecture: bottlenecks whose bn1 in stages 1-3 is IN on the
    first half of the channels and BN on the rest, a 1000-class fc)."""

    def tensor(*shape):
        return torch.randn(*shape, device=device)

    def batch_norm(prefix, channels):
        return {
            f"{prefix}.weight": tensor(channels),
            f"{prefix}.bias": tensor(channels),
            f"{prefix}.running_mean": tensor(channels),
            f"{prefix}.running_var": tensor(channels).abs(),
            f"{prefix}.num_batches_tracked": torch.tensor(0, device=device),
        }

    state = {"conv1.weight": tensor(64, 3, 7, 7), **batch_norm("bn1", 64)}
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for index in range(blocks):
            block = f"layer{stage}.{index}"
            state[f"{block}.conv1.weight"] = tensor(planes, inplanes, 1, 1)
            if stage <= 3:
                state[f"{block}.bn1.IN.weight"], state[f"{block}.bn1.IN.bias"] = (
                    tensor(planes // 2),
                    tensor(planes // 2),
                )
                state.update(batch_norm(f"{block}.bn1.BN", planes - planes // 2))
            else:
                state.update(batch_norm(f"{block}.bn1", planes))
            state[f"{block}.conv2.weight"] = tensor(planes, planes, 3, 3)
            state.update(batch_norm(f"{block}.bn2", planes))
            state[f"{block}.conv3.weight"] = tensor(4 * planes, planes, 1, 1)
            state.update(batch_norm(f"{block}.bn3", 4 * planes))
            if index == 0:
                state[f"{block}.downsample.0.weight"] = tensor(4 * planes, inplanes, 1, 1)
                state.update(batch_norm(f"{block}.downsample.1", 4 * planes))
            inplanes = 4 * planes
    return {**state, "fc.weight": tensor(1000, 2048), "fc.bias": tensor(1000)}


@pytest.mark.parametrize("name", IBN_A_LAYERS)
def test_ibn_a_has_the_published_architecture(name):
    backbone = meta_backbone(name)
    release = release_state_dict(IBN_A_LAYERS[name], device="meta")
    ours = backbone.state_dict()
    assert {key: tuple(value.shape) for key, value in ours.items()} == {
        key: tuple(value.shape) for key, value in release.items() if not key.startswith("fc.")
    }
    # with the 1000-class fc: ResNet-50-IBN-a 25.56 M parameters, ResNet-101-IBN-a 44.55 M (the same as
    # ResNet-50/101: IN's and BN's affine parameters on the two halves count as one BN's)
    with_fc = sum(parameter.numel() for parameter in backbone.parameters()) + 2048 * 1000 + 1000
    assert with_fc == {"resnet50_ibn_a": 25_557_032, "resnet101_ibn_a": 44_549_160}[name]
    shapes = stage_shapes(backbone, ["maxpool", "layer1", "layer2", "layer3", "layer4"])
    assert shapes == {
        "maxpool": (64, 56, 56),
        "layer1": (256, 56, 56),
        "layer2": (512, 28, 28),
        "layer3": (1024, 14, 14),
        "layer4": (2048, 7, 7),
    }
    assert tuple(meta_backbone(name, last_stride=1)(torch.empty(1, 3, 224, 224, device="meta")).shape) == (
        1,
        2048,
        14,
        14,
    )


def test_ibn_layer_normalises_the_first_half_per_instance():
    layer = InstanceBatchNorm2d(64).eval()
    x = torch.randn(3, 64, 8, 4) * 5 + 2
    out = layer(x)
    assert layer.half == 32 and out.shape == x.shape
    first, second = out[:, :32], out[:, 32:]
    assert torch.allclose(first.mean(dim=(2, 3)), torch.zeros(3, 32), atol=1e-5)  # IN: per image, also in eval
    assert torch.allclose(second, (x[:, 32:] - 0) / torch.sqrt(torch.tensor(1 + 1e-5)))  # BN: running stats (0, 1)


def test_ibn_a_weights_in_the_authors_release_format_load(tmp_path, monkeypatch):
    release = release_state_dict(IBN_A_LAYERS["resnet50_ibn_a"])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = tmp_path / "checkpoints" / "resnet50_ibn_a-d9d0bb7b.pth"  # the file name of their v1.0 release
    assert imagenet_weights_path("resnet50_ibn_a") == path
    with pytest.raises(InputError, match=f"weights of resnet50_ibn_a .* to {path}"):
        ReIDNet("resnet50_ibn_a", num_classes=3, pretrained=True)
    path.parent.mkdir()
    torch.save(release, path)
    backbone = ReIDNet("resnet50_ibn_a", num_classes=3, pretrained=True).backbone
    for key in ("conv1.weight", "layer1.0.bn1.IN.weight", "layer3.5.bn1.BN.running_mean", "layer4.2.bn1.bias"):
        assert torch.equal(backbone.state_dict()[key], release[key]), key
    # their first release: a training checkpoint saved from DataParallel ('module.' prefixes)
    first_release = tmp_path / "resnet50_ibn_a.pth.tar"
    torch.save({"epoch": 100, "state_dict": {f"module.{key}": value for key, value in release.items()}}, first_release)
    backbone = ReIDNet("resnet50_ibn_a", num_classes=3, pretrained=str(first_release)).backbone
    assert torch.equal(backbone.layer2[0].bn1.IN.bias, release["layer2.0.bn1.IN.bias"])


def test_plain_resnet_weights_do_not_fit_ibn_a(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(meta_backbone("resnet50").state_dict(), path)
    with torch.device("meta"), pytest.raises(InputError, match=r"do not fit resnet50_ibn_a \(key model.pretrained\)"):
        ReIDNet("resnet50_ibn_a", num_classes=3, pretrained=str(path))
