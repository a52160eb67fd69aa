"""The re-ID network, its losses and its optimisation settings."""

import math

import pytest
import torch

from lfm.errors import InputError
from lfm.masking import LocalFeatureMasking
from lfm.models.backbones import FEATURE_STACKS
from lfm.models.losses import batch_hard_triplet_loss
from lfm.models.optimization import build_optimizer, lr_factor
from lfm.models.reid import ReIDModule, ReIDNet
from lfm.models.weights import imagenet_weights_path

PAPER_LFM = {"after": "conv1", "p": 1.0, "mask_ratio": 0.5, "fill": "zero"}
OPTIMIZER = {"name": "sgd", "lr": 0.1, "backbone_lr_mult": 0.1}
SCHEDULER = {"name": "step", "milestones": [2], "gamma": 0.1}


def test_forward_shapes_and_retrieval_feature():
    net = ReIDNet("resnet18", num_classes=7, embedding_dim=32).eval()
    images = torch.rand(3, 3, 64, 32)
    outputs = net(images)
    assert outputs["pooled"].shape == (3, 512)
    assert outputs["embedding"].shape == (3, 32)
    assert outputs["logits"].shape == (3, 7)
    flipped = net(images.flip(-1))["embedding"]
    assert torch.allclose(net.retrieval_features(images, flip=True), (outputs["embedding"] + flipped) / 2)
    assert torch.equal(net.retrieval_features(images, flip=False), outputs["embedding"])


def test_bnneck_head_without_linear():
    net = ReIDNet("resnet18", num_classes=5, embedding_dim=None).eval()
    assert net(torch.rand(2, 3, 64, 32))["embedding"].shape == (2, 512)


def test_lfm_is_inserted_after_the_named_layer_and_off_in_eval():
    torch.manual_seed(0)
    net = ReIDNet("resnet18", num_classes=4, lfm={**PAPER_LFM, "after": ["conv1", "layer1"]})
    assert list(net.regularizers["lfm"]) == ["conv1", "layer1"]
    assert all(isinstance(module, LocalFeatureMasking) for module in net.regularizers["lfm"].values())
    plain = ReIDNet("resnet18", num_classes=4)
    plain.load_state_dict(net.state_dict())
    images = torch.rand(2, 3, 64, 32)
    net.eval(), plain.eval()
    assert torch.equal(net(images)["embedding"], plain(images)["embedding"])
    net.train(), plain.train()
    assert not torch.allclose(net(images)["pooled"], plain(images)["pooled"])


def test_lfm_output_is_what_the_next_layer_sees():
    net = ReIDNet("resnet18", num_classes=4, lfm=PAPER_LFM).train()
    seen = {}
    net.backbone.bn1.register_forward_pre_hook(lambda _m, inputs: seen.__setitem__("bn1_input", inputs[0]))
    net(torch.rand(2, 3, 64, 32))
    masked_fraction = (seen["bn1_input"] == 0).float().mean()
    assert 0.005 < masked_fraction < 0.5


@pytest.mark.parametrize(
    ("lfm", "message"),
    [
        ({**PAPER_LFM, "mask_ratio": 1.5}, "mask_ratio"),
        ({**PAPER_LFM, "p": -0.1}, "p"),
        ({**PAPER_LFM, "fill": "purple"}, "fill"),
        ({**PAPER_LFM, "after": "layer9"}, "model.lfm.after: unknown insertion point 'layer9'"),
        ({**PAPER_LFM, "after": ""}, "model.lfm.after"),
        ({**PAPER_LFM, "colour": 1}, "model.lfm: lfm.masking.LocalFeatureMasking does not take these arguments"),
    ],
)
def test_bad_lfm_settings_name_the_key(lfm, message):
    with pytest.raises(InputError, match=message):
        ReIDNet("resnet18", num_classes=4, lfm=lfm)


@pytest.mark.parametrize("backbone", FEATURE_STACKS)
def test_other_cnn_families_with_lfm_inside_their_feature_stack(backbone):
    net = ReIDNet(backbone, num_classes=3, embedding_dim=16, lfm={**PAPER_LFM, "after": "features.1"}).train()
    seen = {}
    net.backbone.features[2].register_forward_pre_hook(lambda _m, inputs: seen.__setitem__("x", inputs[0]))
    outputs = net(torch.rand(2, 3, 64, 32))
    assert outputs["logits"].shape == (2, 3) and outputs["pooled"].shape == (2, net.backbone.out_channels)
    assert (seen["x"] == 0).any()


def test_last_stride_one_is_for_resnets_only():
    with pytest.raises(InputError, match="model.last_stride=1 is only available for ResNets"):
        ReIDNet("vgg16_bn", num_classes=3, last_stride=1)


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(InputError, match=r"unknown backbone 'resnet51' \(key model.backbone\).*resnet18"):
        ReIDNet("resnet51", num_classes=4)


def test_missing_pretrained_weights_name_the_path(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    expected = imagenet_weights_path("resnet18")
    with pytest.raises(InputError, match=f"weights of resnet18 .* to {expected}.*model.pretrained=false"):
        ReIDNet("resnet18", num_classes=4, pretrained=True)


def test_pretrained_weights_from_a_local_file(tmp_path):
    source = ReIDNet("resnet18", num_classes=4)
    path = tmp_path / "weights.pth"
    torch.save(source.backbone.state_dict(), path)
    loaded = ReIDNet("resnet18", num_classes=4, pretrained=str(path))
    assert torch.equal(loaded.backbone.conv1.weight, source.backbone.conv1.weight)


def test_pretrained_weights_on_the_meta_device_are_checked_without_warnings(tmp_path, recwarn):
    """The start-up config check builds the network on the meta device: a file that fits loads
    silently (names and shapes only), one that does not fit still fails naming the key."""
    path = tmp_path / "weights.pth"
    torch.save(ReIDNet("resnet18", num_classes=4).backbone.state_dict(), path)
    with torch.device("meta"):
        net = ReIDNet("resnet18", num_classes=4, pretrained=str(path))
    assert net.backbone.conv1.weight.is_meta and not recwarn.list
    torch.save({"head.weight": torch.zeros(1)}, path)
    fits_not = r"do not fit resnet18 \(key model.pretrained\): 100 missing and 1 unexpected"
    with torch.device("meta"), pytest.raises(InputError, match=fits_not):
        ReIDNet("resnet18", num_classes=4, pretrained=str(path))


def test_last_stride_one_doubles_the_final_map():
    for backbone in ("resnet18", "resnet50"):
        shapes = [ReIDNet(backbone, 2, last_stride=s).backbone(torch.rand(1, 3, 64, 32)).shape[-2:] for s in (2, 1)]
        assert tuple(shapes[1]) == (2 * shapes[0][0], 2 * shapes[0][1])


def test_batch_hard_triplet_loss_on_a_hand_example():
    features = torch.tensor([[0.0], [1.0], [3.0], [3.5]])
    pids = torch.tensor([0, 0, 1, 1])
    # anchor 0: hardest positive 1.0, hardest negative 3.0 -> relu(1 - 3 + 0.5) = 0
    # anchor 1: positive 1.0, negative 2.0 -> relu(1 - 2 + 0.5) = 0
    # anchor 2: positive 0.5, negative 2.0 -> 0; anchor 3: positive 0.5, negative 2.5 -> 0
    assert batch_hard_triplet_loss(features, pids, margin=0.5).item() == 0.0
    # margin 1.5: anchor losses relu(1-3+1.5)=0, relu(1-2+1.5)=0.5, relu(0.5-2+1.5)=0, 0 -> mean 0.125
    assert batch_hard_triplet_loss(features, pids, margin=1.5).item() == pytest.approx(0.125)


def test_optimizer_uses_the_backbone_multiplier():
    net = ReIDNet("resnet18", num_classes=4)
    optimizer = build_optimizer(net, OPTIMIZER, SCHEDULER, max_epochs=4)["optimizer"]
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.01, 0.1])
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(net.parameters()))


def test_lr_schedules():
    assert [lr_factor(e, SCHEDULER, 4) for e in range(4)] == pytest.approx([1, 1, 0.1, 0.1])
    warm = {"name": "constant", "warmup_epochs": 2, "warmup_factor": 0.2}
    assert [lr_factor(e, warm, 4) for e in range(3)] == pytest.approx([0.2, 0.6, 1.0])
    cosine = {"name": "cosine"}
    assert lr_factor(0, cosine, 10) == 1.0 and lr_factor(5, cosine, 10) == pytest.approx(0.5)
    assert lr_factor(9, cosine, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"optimizer": {**OPTIMIZER, "name": "lion"}}, "model.optimizer.name"),
        ({"optimizer": {**OPTIMIZER, "lr": 0}}, "model.optimizer.lr"),
        ({"scheduler": {**SCHEDULER, "name": "linear"}}, "model.scheduler.name"),
        ({"optimizer": {**OPTIMIZER, "momentum": -1}}, "model.optimizer setting: Invalid momentum value: -1"),
    ],
)
def test_bad_optimizer_settings_name_the_key(settings, key):
    net = ReIDNet("resnet18", num_classes=4)
    merged = {"optimizer": OPTIMIZER, "scheduler": SCHEDULER, **settings}
    with pytest.raises(InputError, match=key):
        build_optimizer(net, merged["optimizer"], merged["scheduler"], max_epochs=4)


@pytest.mark.parametrize(("key", "value"), [("label_smoothing", 1.0), ("triplet_weight", -1.0)])
def test_bad_loss_settings_name_the_key(key, value):
    with pytest.raises(InputError, match=f"model.{key}"):
        ReIDModule(backbone="resnet18", num_classes=4, optimizer=OPTIMIZER, scheduler=SCHEDULER, **{key: value})


def test_channels_last_and_compile_keep_checkpoints_compatible():
    settings = dict(backbone="resnet18", num_classes=4, optimizer=OPTIMIZER, scheduler=SCHEDULER, lfm=PAPER_LFM)
    plain = ReIDModule(**settings)
    fast = ReIDModule(**settings, channels_last=True, compile=True)
    assert list(fast.state_dict()) == list(plain.state_dict())
    assert fast.net._compiled_call_impl is not None


def test_channels_last_gives_the_same_features():
    settings = dict(backbone="resnet18", num_classes=4, optimizer=OPTIMIZER, scheduler=SCHEDULER, lfm=PAPER_LFM)
    plain, fast = ReIDModule(**settings).eval(), ReIDModule(**settings, channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())
    assert fast.net.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    batch = {"image": torch.rand(2, 3, 64, 32)}
    assert fast.images(batch).is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = plain.net.retrieval_features(batch["image"])
        assert torch.allclose(fast.net.retrieval_features(fast.images(batch)), expected, atol=1e-4)
