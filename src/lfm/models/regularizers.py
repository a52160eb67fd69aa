"""Feature regularizers: modules inserted after named modules of a backbone, acting in training only.

Each is built from a config entry `{_target_: <import path of an nn.Module class or factory>,
after: <module name or list of names>, <its keyword arguments>}`; a fresh module is built for each
insertion point. `model.regularizers` maps labels to entries, a user's own class included. LFM,
Dropout2d and DropBlock are the entries labelled `lfm`, `dropout2d` and `dropblock`, set at their
own keys `model.lfm`, `model.dropout2d` and `model.dropblock` (the paths that sweeps, studies and
docs use), where `_target_` may be left out: it is then the built-in class (checkpoints written
before `_target_` existed hold such entries).
"""

from collections.abc import Mapping

import torchvision
from torch import nn

from lfm.errors import InputError
from lfm.models.insertion import insert_after_each
from lfm.targets import TARGET_KEY, build


class DropBlock2d(torchvision.ops.DropBlock2d):
    """torchvision's DropBlock2d, with its arguments checked when it is built."""

    def __init__(self, p: float, block_size: int):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if block_size < 1 or block_size % 2 == 0:
            raise ValueError(f"block_size must be a positive odd integer, got {block_size}")
        super().__init__(p, block_size)


# label -> the class of a built-in entry, whose config key is model.<label>
BUILT_IN_REGULARIZERS = {
    "lfm": "lfm.masking.LocalFeatureMasking",
    "dropout2d": "torch.nn.Dropout2d",
    "dropblock": "lfm.models.regularizers.DropBlock2d",
}
REGULARIZERS_KEY = "model.regularizers"


def regularizer_entries(regularizers: Mapping | None = None, **built_in: Mapping | None) -> dict[str, tuple[str, dict]]:
    """label -> (its config key, its entry with `_target_`), for the entries that are on (not None).

    `built_in` holds `lfm`, `dropout2d` and `dropblock` (model.<label>); `regularizers` the
    entries of model.regularizers, whose labels must differ from the built-in ones.
    """
    entries = {}
    for label, entry in built_in.items():
        if label not in BUILT_IN_REGULARIZERS:
            raise InputError(f"unknown feature regularizer model.{label}; add it as {REGULARIZERS_KEY}.{label}")
        if entry is not None:
            entries[label] = (f"model.{label}", {TARGET_KEY: BUILT_IN_REGULARIZERS[label], **entry})
    for label, entry in (regularizers or {}).items():
        if label in BUILT_IN_REGULARIZERS:
            raise InputError(
                f"{REGULARIZERS_KEY}.{label}: {label!r} is the label of model.{label}; set model.{label} "
                f"or choose another label"
            )
        if entry is not None:
            entries[label] = (f"{REGULARIZERS_KEY}.{label}", dict(entry))
    return entries


def attach_feature_regularizer(backbone: nn.Module, entry: Mapping, config_key: str) -> nn.ModuleDict:
    """Insert a module built from `entry` after each module named in its `after`, acting in training only.

    Returns the inserted modules keyed by insertion point ('.' written as '__'). Errors name
    `config_key`, the entry's key in the config.
    """
    arguments = dict(entry)
    after = arguments.pop("after", None)
    if not after:
        raise InputError(f"{config_key}.after is empty: name the module to insert after, e.g. {config_key}.after=conv1")
    names = [after] if isinstance(after, str) else list(after)
    build(arguments, config_key, nn.Module)  # a bad value fails here, before the network is changed
    try:
        modules, _ = insert_after_each(
            backbone, names, lambda: build(arguments, config_key, nn.Module), training_only=True
        )
    except ValueError as error:
        raise InputError(f"{config_key}.after: {error}") from None
    return modules


def attach_feature_regularizers(
    backbone: nn.Module, regularizers: Mapping | None = None, **built_in: Mapping | None
) -> nn.ModuleDict:
    """Insert every feature regularizer that is on (see `regularizer_entries`).

    Returns the inserted modules keyed by label, then by insertion point; keep the result
    registered in the model so `.train()`, `.eval()` and `.to()` reach them.
    """
    entries = regularizer_entries(regularizers, **built_in)
    return nn.ModuleDict(
        {label: attach_feature_regularizer(backbone, entry, key) for label, (key, entry) in entries.items()}
    )
