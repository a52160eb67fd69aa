"""Put a module after any named submodule of a network, without changing its code.

The inserted module runs on the named submodule's output through a forward hook, so the
network's state_dict keys (and therefore pretrained weights and checkpoints) are unchanged.
"""

from collections.abc import Sequence

from torch import nn
from torch.utils.hooks import RemovableHandle


def insertion_points(model: nn.Module, max_depth: int | None = None) -> list[str]:
    """Names of the submodules of `model` that a module can be inserted after."""
    names = [name for name, _ in model.named_modules() if name]
    if max_depth is None:
        return names
    return [name for name in names if name.count(".") < max_depth]


def stage_names(model: nn.Module) -> list[str]:
    """The names of `model`'s stages, where the model lists them (timm's `feature_info`)."""
    return [stage["module"] for stage in getattr(model, "feature_info", None) or [] if stage.get("module")]


def _unknown_name_message(model: nn.Module, name: str) -> str:
    names = insertion_points(model)
    stages = stage_names(model)
    shallow = ", ".join(stages + [point for point in insertion_points(model, max_depth=2) if point not in stages])
    deeper = next((deep for deep in names if deep.count(".") >= 2), None)
    example = f" (or a deeper submodule such as {deeper})" if deeper else ""
    return f"unknown insertion point {name!r} for {type(model).__name__}; valid names: {shallow}{example}"


def insert_after(model: nn.Module, name: str, module: nn.Module, training_only: bool = False) -> RemovableHandle:
    """Apply `module` to the output of `model`'s submodule `name` on every forward (with
    `training_only`, only while `module` is in training mode: it is skipped in evaluation).

    The caller keeps `module` registered somewhere in the model (so `.train()`, `.eval()`
    and `.to()` reach it). Returns the hook handle; `handle.remove()` undoes the insertion.
    """
    submodules = dict(model.named_modules())
    if not name or name not in submodules:
        raise ValueError(_unknown_name_message(model, name))
    if training_only:
        return submodules[name].register_forward_hook(
            lambda _module, _inputs, output: module(output) if module.training else None
        )
    return submodules[name].register_forward_hook(lambda _module, _inputs, output: module(output))


def insert_after_each(
    model: nn.Module, names: Sequence[str], make_module, training_only: bool = False
) -> tuple[nn.ModuleDict, list[RemovableHandle]]:
    """Insert a fresh `make_module()` after each named submodule (see `insert_after`).

    Returns the inserted modules keyed by insertion point ('.' written as '__', since
    ModuleDict keys cannot hold dots) and the hook handles.
    """
    if len(set(names)) != len(names):
        raise ValueError(f"insertion points must be distinct, got {list(names)}")
    modules = nn.ModuleDict()
    handles = []
    for name in names:
        module = make_module()
        handles.append(insert_after(model, name, module, training_only))
        modules[name.replace(".", "__")] = module
    return modules, handles
