"""One projected sign-gradient loop in [0, 1] pixel space; FGSM, I-FGSM, PGD and MI-FGSM are
settings of it:

| attack  | settings                                                        |
|---------|-----------------------------------------------------------------|
| FGSM    | steps=1, alpha=eps                                              |
| I-FGSM  | steps=n, alpha=eps/n or 1/255 (Kurakin et al.)                  |
| PGD     | random_start=True (Madry et al.); restarts: linf_pgd_with_restarts |
| MI-FGSM | momentum=1.0 (Dong et al.)                                      |

The update is torchattacks' (PGD, MIFGSM): step along the gradient's sign, clip the
perturbation to [-eps, eps], clip the image to [0, 1].
"""

from collections.abc import Callable

import torch


def _check(eps: float, alpha: float, steps: int, momentum: float) -> None:
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if not momentum >= 0:
        raise ValueError(f"momentum must be >= 0, got {momentum}")


def linf_pgd(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = False,
    momentum: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images x in [0, 1] -> adversarial images within `eps` (L-inf) that increase `loss_fn`.

    `loss_fn(x_adv)` returns a scalar to maximise (sum per-sample losses so that every
    sample gets its own gradient). The model behind it should be in eval mode. `generator`
    draws the random start (on x's device). With eps = 0 or steps = 0 (and no random start)
    the result equals x exactly.
    """
    _check(eps, alpha, steps, momentum)
    x = x.detach()
    if eps == 0:
        return x.clone()
    x_adv = x.clone()
    if random_start:
        noise = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
        x_adv = (x_adv + noise).clamp(0, 1)
    velocity = torch.zeros_like(x)
    sample_dims = tuple(range(1, x.ndim))
    with torch.enable_grad():
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(loss_fn(x_adv), x_adv)
            if momentum > 0:
                # MI-FGSM: L1-normalise each sample's gradient before accumulating it.
                scale = grad.abs().mean(dim=sample_dims, keepdim=True).clamp_min(torch.finfo(grad.dtype).tiny)
                grad = grad / scale + momentum * velocity
                velocity = grad
            x_adv = x_adv.detach() + alpha * grad.sign()
            delta = (x_adv - x).clamp(-eps, eps)
            x_adv = (x + delta).clamp(0, 1)
    return x_adv.detach()


def linf_pgd_with_restarts(
    per_sample_loss: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    restarts: int,
    eps: float,
    alpha: float,
    steps: int,
    momentum: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PGD from `restarts` random starts; per sample, the result with the highest loss.

    `per_sample_loss(x_adv)` returns one loss per sample ([B]).
    """
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be an int >= 1, got {restarts!r}")
    best, best_loss = x.detach().clone(), None
    for _ in range(restarts):
        x_adv = linf_pgd(
            lambda images: per_sample_loss(images).sum(),
            x,
            eps=eps,
            alpha=alpha,
            steps=steps,
            random_start=True,
            momentum=momentum,
            generator=generator,
        )
        with torch.no_grad():
            loss = per_sample_loss(x_adv)
        if best_loss is None:
            best, best_loss = x_adv, loss
            continue
        better = loss > best_loss
        best = torch.where(better.view(-1, *([1] * (x.ndim - 1))), x_adv, best)
        best_loss = torch.maximum(loss, best_loss)
    return best
