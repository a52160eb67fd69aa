"""The attack core: budgets, exactness at eps = 0, strength ordering, and equality with an
independent PGD / MI-FGSM written from the papers (torchattacks' update rule).

torchattacks itself is not a test dependency: its requirements pin requests 2.25 (and older
idna and urllib3), which would downgrade packages our pins install.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lfm.attacks import linf_pgd, linf_pgd_with_restarts
from lfm.attacks.classification import cross_entropy_loss, cw_margin_loss

EPS = 8 / 255


def small_classifier(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(128, 5),
    )
    return model.eval()


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(6, 3, 16, 16, generator=generator)
    model = small_classifier()
    with torch.no_grad():
        labels = model(images).argmax(dim=1)  # the model is right on every image before the attack
    return model, images, labels


def ce_sum(model, labels):
    return lambda x: F.cross_entropy(model(x), labels, reduction="sum")


def reference_pgd(model, images, labels, eps, alpha, steps, start=None):
    """Madry et al.'s L-inf PGD, written as torchattacks.PGD does it (mean cross-entropy)."""
    adv = images.clone().detach()
    if start is not None:
        adv = torch.clamp(adv + start, min=0, max=1).detach()
    for _ in range(steps):
        adv.requires_grad = True
        cost = nn.CrossEntropyLoss()(model(adv), labels)
        grad = torch.autograd.grad(cost, adv, retain_graph=False, create_graph=False)[0]
        adv = adv.detach() + alpha * grad.sign()
        delta = torch.clamp(adv - images, min=-eps, max=eps)
        adv = torch.clamp(images + delta, min=0, max=1).detach()
    return adv


def reference_mifgsm(model, images, labels, eps, alpha, steps, decay=1.0):
    """Dong et al.'s MI-FGSM, written as torchattacks.MIFGSM does it."""
    momentum = torch.zeros_like(images)
    adv = images.clone().detach()
    for _ in range(steps):
        adv.requires_grad = True
        cost = nn.CrossEntropyLoss()(model(adv), labels)
        grad = torch.autograd.grad(cost, adv, retain_graph=False, create_graph=False)[0]
        grad = grad / torch.mean(torch.abs(grad), dim=(1, 2, 3), keepdim=True)
        grad = grad + momentum * decay
        momentum = grad
        adv = adv.detach() + alpha * grad.sign()
        delta = torch.clamp(adv - images, min=-eps, max=eps)
        adv = torch.clamp(images + delta, min=0, max=1).detach()
    return adv


def accuracy(model, images, labels) -> float:
    with torch.no_grad():
        return (model(images).argmax(dim=1) == labels).float().mean().item()


def test_eps_zero_returns_the_clean_images_exactly(batch):
    model, images, labels = batch
    for random_start in (False, True):
        adv = linf_pgd(ce_sum(model, labels), images, eps=0.0, alpha=1 / 255, steps=5, random_start=random_start)
        assert torch.equal(adv, images)


@pytest.mark.parametrize(
    "settings",
    [
        {"alpha": EPS, "steps": 1},  # FGSM
        {"alpha": 1 / 255, "steps": 12},  # I-FGSM
        {"alpha": 2 / 255, "steps": 10, "random_start": True},  # PGD
        {"alpha": 1 / 255, "steps": 12, "momentum": 1.0},  # MI-FGSM
    ],
)
def test_perturbation_stays_within_eps_and_images_within_unit_range(batch, settings):
    model, images, labels = batch
    edge = images.clone()
    edge[0] = 0.0  # pixels at the range's edges must stay clipped
    edge[1] = 1.0
    adv = linf_pgd(ce_sum(model, labels), edge, eps=EPS, generator=torch.Generator().manual_seed(0), **settings)
    assert (adv - edge).abs().max().item() <= EPS + 1e-6  # float32 rounding of x + delta
    assert adv.min().item() >= 0.0 and adv.max().item() <= 1.0
    assert not torch.equal(adv, edge)


def test_pgd_equals_the_reference_pgd_exactly(batch):
    model, images, labels = batch
    ours = linf_pgd(ce_sum(model, labels), images, eps=EPS, alpha=2 / 255, steps=10)
    assert torch.equal(ours, reference_pgd(model, images, labels, EPS, 2 / 255, 10))


def test_pgd_with_random_start_equals_the_reference_from_the_same_start(batch):
    model, images, labels = batch
    start = torch.empty_like(images).uniform_(-EPS, EPS, generator=torch.Generator().manual_seed(3))
    ours = linf_pgd(
        ce_sum(model, labels),
        images,
        eps=EPS,
        alpha=2 / 255,
        steps=10,
        random_start=True,
        generator=torch.Generator().manual_seed(3),
    )
    assert torch.equal(ours, reference_pgd(model, images, labels, EPS, 2 / 255, 10, start=start))


def test_mifgsm_equals_the_reference_mifgsm_exactly(batch):
    model, images, labels = batch
    ours = linf_pgd(ce_sum(model, labels), images, eps=EPS, alpha=1 / 255, steps=10, momentum=1.0)
    assert torch.equal(ours, reference_mifgsm(model, images, labels, EPS, 1 / 255, 10))


def test_iterative_attack_is_at_least_as_strong_as_fgsm_and_noise_is_much_weaker(batch):
    model, images, labels = batch
    loss = ce_sum(model, labels)
    fgsm = linf_pgd(loss, images, eps=EPS, alpha=EPS, steps=1)
    pgd = linf_pgd(loss, images, eps=EPS, alpha=1 / 255, steps=20)
    signs = torch.randint(0, 2, images.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noise = (images + EPS * signs).clamp(0, 1)
    with torch.no_grad():
        losses = {
            name: F.cross_entropy(model(x), labels).item()
            for name, x in (("clean", images), ("noise", noise), ("fgsm", fgsm), ("pgd", pgd))
        }
    assert losses["pgd"] >= losses["fgsm"] > losses["clean"]
    assert losses["pgd"] - losses["clean"] > 5 * abs(losses["noise"] - losses["clean"])
    assert accuracy(model, pgd, labels) <= accuracy(model, fgsm, labels) <= accuracy(model, images, labels) == 1.0


def test_restarts_keep_the_strongest_result_per_sample(batch):
    model, images, labels = batch
    per_sample = cross_entropy_loss(model, labels)
    settings = {"eps": EPS, "alpha": 2 / 255, "steps": 3}
    single = linf_pgd_with_restarts(
        per_sample, images, restarts=1, generator=torch.Generator().manual_seed(5), **settings
    )
    several = linf_pgd_with_restarts(
        per_sample, images, restarts=4, generator=torch.Generator().manual_seed(5), **settings
    )
    with torch.no_grad():
        assert (per_sample(several) >= per_sample(single)).all()
    assert (several - images).abs().max().item() <= EPS + 1e-6


def test_classification_losses_have_nonzero_gradients_and_cw_is_the_margin(batch):
    model, images, labels = batch
    for build in (cross_entropy_loss, cw_margin_loss):
        x = images.clone().requires_grad_(True)
        build(model, labels)(x).sum().backward()
        assert x.grad.abs().sum().item() > 0, build.__name__
    with torch.no_grad():
        logits = model(images)
        margin = cw_margin_loss(model, labels)(images)
    other = logits.clone()
    other[torch.arange(len(labels)), labels] = -torch.inf
    assert torch.allclose(margin, other.max(dim=1).values - logits[torch.arange(len(labels)), labels])
    assert (margin < 0).all()  # correctly classified before the attack


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"eps": -1.0}, "eps"), ({"alpha": -0.1}, "alpha"), ({"steps": 1.5}, "steps"), ({"momentum": -1.0}, "momentum")],
)
def test_invalid_arguments_are_refused(batch, arguments, message):
    model, images, labels = batch
    settings = {"eps": EPS, "alpha": 1 / 255, "steps": 2, **arguments}
    with pytest.raises(ValueError, match=message):
        linf_pgd(ce_sum(model, labels), images, **settings)
