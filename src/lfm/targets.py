"""Objects built from config entries `{_target_: <import path>, <keyword arguments>}`, as Hydra's
`instantiate` builds them, with a one-line error that names the config key when the entry is wrong.

A target is a class or a function on the Python path (a user's module outside this package
included). Its entry is checked before anything is built: the import path resolves, the keyword
arguments fit its signature, and (given `kind`) a class target is a subclass of `kind`.
"""

import functools
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lfm.errors import InputError

TARGET_KEY = "_target_"
EXAMPLE_PATH = "mypackage.mymodule.MyClass"


def has_target(entry: Any) -> bool:
    """Whether `entry` is a mapping with a `_target_`."""
    return isinstance(entry, Mapping | DictConfig) and TARGET_KEY in entry


def _plain(entry: Mapping | DictConfig) -> dict:
    return OmegaConf.to_container(entry, resolve=True) if isinstance(entry, DictConfig) else dict(entry)


def locate(path: Any, key: str) -> Any:
    """The object at the dotted import path `path` (config key `key`._target_ in the error)."""
    where = f"{key}.{TARGET_KEY}={path}"
    if not isinstance(path, str) or not path or "." not in path:
        raise InputError(f"{where} is not an import path; write the module and the name, e.g. {EXAMPLE_PATH}")
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue  # this prefix is no module: try a shorter one
            raise InputError(f"{where}: importing {module_name} failed ({error})") from None
        except Exception as error:  # the user's module raised while it was imported
            raise InputError(f"{where}: importing {module_name} failed ({type(error).__name__}: {error})") from None
        for name in parts[split:]:
            if not hasattr(target, name):
                raise InputError(f"{where}: module {module_name} has no {'.'.join(parts[split:])}; check the name")
            target = getattr(target, name)
        return target
    raise InputError(
        f"{where}: no module {parts[0]} on the Python path; put the module's folder on PYTHONPATH "
        f"(or install its package), or fix the path"
    )


def target_name(value: Any) -> str:
    """A short name for a config value that may be an entry: its target's name (the last part of its
    import path), else the value itself. The config resolver `lfm.name`, e.g. in run names:
    `${lfm.name:${model.backbone}}` is resnet50 for `resnet50` and MyNet for `{_target_: mypackage.MyNet}`."""
    return str(value[TARGET_KEY]).rsplit(".", 1)[-1] if has_target(value) else str(value)


OmegaConf.register_new_resolver("lfm.name", target_name, replace=True)


def public_name(kind: type) -> str:
    """The shortest import path of a class, e.g. torch.nn.Module (not torch.nn.modules.module.Module)."""
    parts = kind.__module__.split(".")
    for end in range(1, len(parts) + 1):
        module = importlib.import_module(".".join(parts[:end]))
        if getattr(module, kind.__qualname__, None) is kind:
            return f"{module.__name__}.{kind.__qualname__}"
    return f"{kind.__module__}.{kind.__qualname__}"


def _arguments_of(target: Any) -> str:
    try:
        names = [name for name in inspect.signature(target).parameters if name not in ("args", "kwargs")]
    except (TypeError, ValueError):
        return ""
    return f"; it takes {', '.join(names)}" if names else "; it takes no arguments"


def check_target(entry: Mapping | DictConfig, key: str, kind: type | None = None, **extra: Any) -> Any:
    """Check the entry at config key `key` without building it; return its target.

    The target must import, be callable, take the entry's keyword arguments (and `extra`, those
    the caller adds), and, when it is a class and `kind` is given, be a subclass of `kind`.
    """
    if not has_target(entry):
        raise InputError(f"{key} has no {TARGET_KEY}; give the import path of what to build, e.g. {EXAMPLE_PATH}")
    arguments = _plain(entry)
    path = arguments.pop(TARGET_KEY)
    target = locate(path, key)
    if not callable(target):
        raise InputError(f"{key}.{TARGET_KEY}={path} is a {type(target).__name__}, not a class or a function")
    if kind is not None and inspect.isclass(target) and not issubclass(target, kind):
        raise InputError(f"{key}.{TARGET_KEY}={path} is not a {public_name(kind)}")
    positional = arguments.pop("_args_", [])
    keywords = {name: value for name, value in arguments.items() if not name.startswith("_")}
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # some builtins have no signature: the call itself checks
        return target
    try:
        signature.bind(*positional, **keywords, **extra)
    except TypeError as error:
        raise InputError(f"{key}: {path} does not take these arguments ({error}){_arguments_of(target)}") from None
    return target


def build(entry: Mapping | DictConfig, key: str, kind: type | None = None, **extra: Any) -> Any:
    """Build the entry at config key `key` as Hydra's `instantiate` does (nested `_target_`s and
    `_partial_` included; containers passed as plain lists and dicts), with `extra` added to its
    keyword arguments (any Python objects). With `kind`, the result must be an instance of it."""
    check_target(entry, key, kind, **extra)
    settings = _plain(entry)
    path = settings[TARGET_KEY]
    partial = settings.pop("_partial_", False)
    try:
        factory = instantiate({**settings, "_partial_": True}, _convert_="all")
    except InstantiationException as error:  # a nested entry failed
        raise _setting_error(key, path, error.__cause__ or error) from None
    if partial:
        return functools.partial(factory, **extra)
    try:
        built = factory(**extra)
    except InputError:  # the target checks its own arguments and names their keys
        raise
    except (TypeError, ValueError, AssertionError) as error:
        raise _setting_error(key, path, error) from None
    if kind is not None and not isinstance(built, kind):
        raise InputError(f"{key}.{TARGET_KEY}={path} built a {type(built).__name__}, not a {public_name(kind)}")
    return built


def _setting_error(key: str, path: str, cause: BaseException) -> InputError:
    if isinstance(cause, InputError):
        return cause
    text = str(cause).strip()
    message = text.splitlines()[0] if text else type(cause).__name__
    return InputError(f"invalid {key} setting: {message} ({path})")
