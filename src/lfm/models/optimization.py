"""The optimizer and learning-rate schedule of every task's LightningModule (config keys
`model.optimizer` and `model.scheduler`)."""

import math
from collections.abc import Mapping

import torch
from torch import nn

from lfm.errors import InputError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("step", "cosine", "constant")


def build_optimizer(net: nn.Module, optimizer: Mapping, scheduler: Mapping, max_epochs: int) -> dict:
    """Optimizer with a backbone learning-rate multiplier, and a per-epoch LR schedule.

    `net` is a network with a `backbone` (ReIDNet, ClassificationNet): its parameters get
    lr * backbone_lr_mult, the others lr.

    `optimizer`: name (sgd | adam | adamw), lr, weight_decay, momentum, nesterov,
    backbone_lr_mult. `scheduler`: name (step | cosine | constant), milestones, gamma,
    warmup_epochs (linear warm-up from warmup_factor * lr).
    """
    name = optimizer["name"]
    if name not in OPTIMIZERS:
        raise InputError(f"model.optimizer.name must be one of {OPTIMIZERS}, got {name!r}")
    if scheduler["name"] not in SCHEDULERS:
        raise InputError(f"model.scheduler.name must be one of {SCHEDULERS}, got {scheduler['name']!r}")
    lr = optimizer["lr"]
    if not lr > 0:
        raise InputError(f"model.optimizer.lr must be > 0, got {lr}")
    backbone_params = list(net.backbone.parameters())
    backbone_ids = {id(param) for param in backbone_params}
    head_params = [param for param in net.parameters() if id(param) not in backbone_ids]
    groups = [
        {"params": backbone_params, "lr": lr * optimizer.get("backbone_lr_mult", 1.0)},
        {"params": head_params, "lr": lr},
    ]
    weight_decay = optimizer.get("weight_decay", 0.0)
    try:
        if name == "sgd":
            opt = torch.optim.SGD(
                groups,
                lr=lr,
                momentum=optimizer.get("momentum", 0.9),
                nesterov=optimizer.get("nesterov", True),
                weight_decay=weight_decay,
            )
        else:
            opt_class = torch.optim.Adam if name == "adam" else torch.optim.AdamW
            opt = opt_class(groups, lr=lr, weight_decay=weight_decay)
    except ValueError as error:  # torch names the argument: "Invalid momentum value: -1"
        raise InputError(f"invalid model.optimizer setting: {error}") from None
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_factor(epoch, scheduler, max_epochs))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}


def lr_factor(epoch: int, scheduler: Mapping, max_epochs: int) -> float:
    """Multiplier of the base learning rate at `epoch` (warm-up times the decay)."""
    warmup_epochs = scheduler.get("warmup_epochs", 0)
    warmup = 1.0
    if epoch < warmup_epochs:
        start = scheduler.get("warmup_factor", 0.1)
        warmup = start + (1.0 - start) * epoch / warmup_epochs
    if scheduler["name"] == "step":
        passed = sum(epoch >= milestone for milestone in scheduler.get("milestones", []))
        decay = scheduler.get("gamma", 0.1) ** passed
    elif scheduler["name"] == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * min(epoch, max_epochs) / max(max_epochs, 1)))
    else:
        decay = 1.0
    return warmup * decay
