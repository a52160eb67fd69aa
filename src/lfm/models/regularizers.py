"""Feature regularizers (LFM, Dropout2d, DropBlock) built from config and inserted into a backbone."""

from collections.abc import Mapping

import torchvision
from torch import nn

from lfm.errors import InputError
from lfm.masking import LocalFeatureMasking
from lfm.models.insertion import insert_after_each


class DropBlock2d(torchvision.ops.DropBlock2d):
    """torchvision's DropBlock2d, with its arguments checked when it is built."""

    def __init__(self, p: float, block_size: int):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if block_size < 1 or block_size % 2 == 0:
            raise ValueError(f"block_size must be a positive odd integer, got {block_size}")
        super().__init__(p, block_size)


FEATURE_REGULARIZERS = {
    "lfm": LocalFeatureMasking,
    "dropout2d": nn.Dropout2d,
    "dropblock": DropBlock2d,
}


def attach_feature_regularizer(
    backbone: nn.Module, key: str, settings: Mapping | None, config_key: str | None = None
) -> nn.ModuleDict:
    """Insert the regularizer `key` after each module named in `settings["after"]`.

    `settings` (config `model.<key>`, or `config_key` in error messages) holds `after` (a
    module name or a list of names) and the regularizer's keyword arguments; `None` means
    none. Returns the inserted modules keyed by insertion point ('.' written as '__').
    """
    config_key = config_key or f"model.{key}"
    if settings is None:
        return nn.ModuleDict()
    arguments = dict(settings)
    after = arguments.pop("after", None)
    if not after:
        raise InputError(f"{config_key}.after is empty: name the module to insert after, e.g. {config_key}.after=conv1")
    names = [after] if isinstance(after, str) else list(after)
    regularizer = FEATURE_REGULARIZERS[key]
    try:
        regularizer(**arguments)
    except (TypeError, ValueError) as error:
        raise InputError(f"invalid {config_key} setting: {error}") from None
    try:
        modules, _ = insert_after_each(backbone, names, lambda: regularizer(**arguments))
    except ValueError as error:
        raise InputError(f"{config_key}.after: {error}") from None
    return modules


def attach_feature_regularizers(backbone: nn.Module, **settings: Mapping | None) -> nn.ModuleDict:
    """Insert each configured feature regularizer (`lfm`, `dropout2d`, `dropblock`; None = off).

    Returns the inserted modules keyed by regularizer, then by insertion point; keep the
    result registered in the model so `.train()`, `.eval()` and `.to()` reach them.
    """
    return nn.ModuleDict(
        {key: attach_feature_regularizer(backbone, key, settings.get(key)) for key in FEATURE_REGULARIZERS}
    )
