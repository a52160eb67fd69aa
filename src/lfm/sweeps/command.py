"""The command line of one run, rendered from the sweep file's `command` as the W&B agent renders it."""

import os
import re
import shutil

from lfm.sweeps.spec import ARGS_MACRO, PROGRAM_MACRO, SweepSpec

# ${envvar:NAME} in a command item is replaced by that environment variable, as the W&B agent does.
ENVVAR_MACRO = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")


def override(key: str, value) -> str:
    """`key=value` exactly as W&B's ${args_no_hyphens} writes it (Python's str of the value)."""
    return f"{key}={value}"


def parameter_overrides(parameters: dict) -> list[str]:
    return [override(key, value) for key, value in parameters.items()]


def expand_envvars(item: str) -> str:
    return ENVVAR_MACRO.sub(lambda match: os.environ.get(match.group(1), match.group(1)), item)


def hydra_overrides(spec: SweepSpec, parameters: dict) -> list[str]:
    """What the program receives as Hydra overrides: the command's items after ${program}, the run's values in place."""
    overrides: list[str] = []
    for item in spec.command[spec.command.index(PROGRAM_MACRO) + 1 :]:
        overrides += parameter_overrides(parameters) if item == ARGS_MACRO else [expand_envvars(item)]
    return overrides


def render_command(spec: SweepSpec, parameters: dict, interpreter: str) -> list[str]:
    """The full argv of one run; ${env} becomes /usr/bin/env where it exists, ${interpreter} this Python."""
    head = spec.command[: spec.command.index(PROGRAM_MACRO)]
    macros = {"${env}": [shutil.which("env")] if shutil.which("env") else [], "${interpreter}": [interpreter]}
    argv: list[str] = []
    for item in head:
        argv += macros.get(item, [expand_envvars(item)])
    return [*argv, spec.program, *hydra_overrides(spec, parameters)]
