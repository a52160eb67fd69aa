"""Objects built from config entries `{_target_: <import path>, <keyword arguments>}`, as Hydra's
`instantiate` builds them, with a one-line error that names the config key when the entry is wrong.

A target is a class or a function on the Python path (a user's module outside this package
included). Its entry is checked before anything is built: the import path resolves, the keyword
arguments fit its signature, and (given `kind`) a class target is a subclass of `kind`.
"""

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
    """Build the entry at config key `key` with Hydra's `instantiate` (nested `_target_`s, `_partial_`
    included; containers passed as plain lists and dicts), `extra` added to its keyword arguments.
    With `kind`, the result must be an instance of it."""
    check_target(entry, key, kind, **extra)
    path = entry[TARGET_KEY]
    try:
        built = instantiate(_plain(entry), _convert_="all", **extra)
    except InstantiationException as error:
        cause = error.__cause__ or error
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise InputError(f"{key}: building {path} failed ({type(cause).__name__}: {message})") from None
    if kind is not None and not isinstance(built, kind):
        raise InputError(
            f"{key}.{TARGET_KEY}={path} built a {type(built).__name__}, not a {public_name(kind)}"
        )
    return built
