"""Re-ID attack losses: computed on the exact evaluation feature, with non-zero gradients,
on a model that is deterministic in eval mode (LFM off)."""

import pytest
import torch

from lfm.attacks import linf_pgd
from lfm.attacks.reid import build_reid_loss, paired_distance, true_matches
from lfm.models.reid import ReIDNet

LFM = {"after": "conv1", "p": 1.0, "mask_ratio": 0.5, "area": [0.1, 0.4], "aspect": [0.3, 3.3], "fill": "random"}


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = ReIDNet("resnet18", num_classes=4, lfm=LFM, embedding_dim=32)
    model.train()
    with torch.no_grad():  # give BatchNorm running statistics that are not the defaults
        for _ in range(3):
            model(torch.rand(8, 3, 32, 16))
    return model.eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(4, 3, 32, 16, generator=torch.Generator().manual_seed(2))


def test_lfm_model_is_deterministic_in_eval_and_masks_in_training(net, images):
    with torch.no_grad():
        first, second = net.retrieval_features(images), net.retrieval_features(images)
        assert torch.equal(first, second)
        net.train()
        masked = net(images)["embedding"]
        net.eval()
    assert not torch.allclose(masked, first)
    assert all(not module.training for module in net.modules())


def feature_fn(net):
    return lambda x: net.retrieval_features(x, flip=True)


def losses_for(net, images, name):
    with torch.no_grad():
        clean = net.retrieval_features(images, flip=True)
    gallery = clean.roll(1, dims=0) + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(4))
    pids, camids = torch.tensor([1, 2, 3, 4]), torch.tensor([1, 1, 1, 1])
    positives = true_matches(pids, camids, pids.roll(1), torch.tensor([2, 2, 2, 2]))
    return build_reid_loss(name, feature_fn(net), clean=clean, gallery=gallery, positives=positives, distance="cosine")


@pytest.mark.parametrize("name", ["sma", "odfa", "metric"])
def test_each_loss_has_a_nonzero_gradient_where_the_attack_starts(net, images, name):
    torch.manual_seed(0)
    loss = losses_for(net, images, name)
    start = images if name != "sma" else (images + torch.empty_like(images).uniform_(-4 / 255, 4 / 255)).clamp(0, 1)
    x = start.clone().requires_grad_(True)
    loss(x).sum().backward()
    per_image = x.grad.abs().flatten(1).sum(dim=1)
    assert (per_image > 0).all(), per_image


def test_sma_gradient_vanishes_at_the_clean_image(net, images):
    """Why SMA starts from a random point: at x_adv = x its distance is at the minimum."""
    x = images.clone().requires_grad_(True)
    losses_for(net, images, "sma")(x).sum().backward()
    assert x.grad.abs().max().item() < 1e-5


@pytest.mark.parametrize("name", ["sma", "odfa", "metric"])
def test_attack_increases_its_loss_and_moves_the_evaluation_feature(net, images, name):
    torch.manual_seed(0)
    loss = losses_for(net, images, name)
    adv = linf_pgd(
        lambda x: loss(x).sum(),
        images,
        eps=8 / 255,
        alpha=2 / 255,
        steps=5,
        random_start=name == "sma",
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        clean = net.retrieval_features(images)
        moved = paired_distance(net.retrieval_features(adv), clean, "cosine")
        assert loss(adv).sum() > loss(images).sum()
    assert (moved > 1e-3).all()


def test_true_matches_are_same_person_other_camera():
    mask = true_matches(
        torch.tensor([5, 6]), torch.tensor([1, 1]), torch.tensor([5, 5, 6, 0]), torch.tensor([1, 2, 2, 2])
    )
    assert mask.tolist() == [[False, True, False, False], [False, False, True, False]]
