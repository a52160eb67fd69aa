"""Build feature regularizers from config and insert them into a backbone."""

from collections.abc import Mapping

from torch import nn

from lfm.errors import InputError
from lfm.insertion import insert_after_each
from lfm.masking import LocalFeatureMasking


def attach_lfm(backbone: nn.Module, lfm: Mapping | None) -> nn.ModuleDict:
    """Insert LocalFeatureMasking after each module named in `lfm["after"]` (config `model.lfm`).

    `lfm` holds `after` (a module name or a list of names) and the keyword arguments of
    LocalFeatureMasking; `None` means no masking.
    """
    if lfm is None:
        return nn.ModuleDict()
    settings = dict(lfm)
    after = settings.pop("after", None)
    if not after:
        raise InputError("model.lfm.after is empty: name the module to mask after, e.g. model.lfm.after=conv1")
    names = [after] if isinstance(after, str) else list(after)
    try:
        LocalFeatureMasking(**settings)
    except (TypeError, ValueError) as error:
        raise InputError(f"invalid model.lfm setting: {error}") from None
    try:
        modules, _ = insert_after_each(backbone, names, lambda: LocalFeatureMasking(**settings))
    except ValueError as error:
        raise InputError(f"model.lfm.after: {error}") from None
    return modules
