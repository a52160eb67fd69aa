"""Read and check a W&B sweep file (the subset that runs offline), before any run starts."""

import math
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lfm.errors import InputError

METHODS = ("grid", "random", "bayes")
GOALS = ("maximize", "minimize")
# Top-level keys of a W&B sweep file; the ones the offline runner ignores are W&B server settings.
SWEEP_KEYS = {
    "program",
    "method",
    "metric",
    "parameters",
    "command",
    "name",
    "description",
    "project",
    "entity",
    "early_terminate",
    "run_cap",
}
PARAMETER_KEYS = {"value", "values", "probabilities", "distribution", "min", "max", "q"}
CONTINUOUS = ("uniform", "int_uniform", "q_uniform", "log_uniform_values")
ARGS_MACRO = "${args_no_hyphens}"
PROGRAM_MACRO = "${program}"
# W&B argument macros that do not produce Hydra overrides of existing keys.
NON_HYDRA_MACROS = (
    "${args}",
    "${args_no_boolean_flags}",
    "${args_json}",
    "${args_json_file}",
    "${args_no_equals}",
    "${args_append_hydra}",
    "${args_override_hydra}",
)


@dataclass(frozen=True)
class Parameter:
    """One swept config key: a list of values, or a distribution between low and high."""

    key: str
    values: tuple = ()
    probabilities: tuple[float, ...] | None = None
    distribution: str = "categorical"
    low: float | None = None
    high: float | None = None
    q: float | None = None

    @property
    def is_discrete(self) -> bool:
        return self.distribution in ("constant", "categorical")

    def bounds_and_values(self) -> tuple:
        """Values that represent this parameter when checking it against the config."""
        return self.values if self.is_discrete else (self.low, self.high)


@dataclass(frozen=True)
class SweepSpec:
    path: Path
    name: str
    program: str
    method: str
    metric: dict | None
    parameters: tuple[Parameter, ...]
    command: tuple[str, ...]
    run_cap: int | None


def read_yaml(path: Path, what: str, resolve: bool = False):
    """A sweep or study file's (`what`'s) contents as plain Python; one-line InputError naming the file and the
    line when it is not YAML."""
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=resolve)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise InputError(
            f"{path} is not a valid YAML {what} (line {mark.line + 1}, column {mark.column + 1}: "
            f"{error.problem or error.context})"
        ) from None
    except (OmegaConfBaseException, ValueError, yaml.YAMLError) as error:
        raise InputError(
            f"{path} is not a valid YAML {what} ({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from None


def load_sweep(path: Path) -> SweepSpec:
    """Parse and check a sweep file's structure; config keys are checked by lfm.sweeps.config_check."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"sweep file {path} does not exist; pass a file from conf/sweep/")
    raw = read_yaml(path, "sweep file")
    if not isinstance(raw, dict):
        raise InputError(f"{path} must be a mapping with program, method, parameters and command")
    unknown = sorted(set(raw) - SWEEP_KEYS)
    if unknown:
        raise InputError(f"{path}: unknown top-level key(s) {unknown}; a W&B sweep file has {sorted(SWEEP_KEYS)}")
    method = raw.get("method")
    if method not in METHODS:
        raise InputError(f"{path}: method must be one of {list(METHODS)}, got {method!r}")
    program = raw.get("program")
    if not isinstance(program, str) or not program:
        raise InputError(f"{path}: program is missing; set program: src/train.py")
    parameters = raw.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise InputError(f"{path}: parameters is missing or empty; add at least one swept config key")
    return SweepSpec(
        path=path,
        name=str(raw.get("name") or path.stem),
        program=program,
        method=method,
        metric=check_metric(path, raw.get("metric"), method),
        parameters=tuple(check_parameter(path, str(key), spec) for key, spec in parameters.items()),
        command=check_command(path, raw.get("command")),
        run_cap=check_run_cap(path, raw.get("run_cap")),
    )


def with_overrides(spec: SweepSpec, overrides: list[str]) -> SweepSpec:
    """The sweep with Hydra overrides added to every run's command, before the swept values."""
    wrong = [item for item in overrides if "=" not in item or item.startswith("-")]
    if wrong:
        raise InputError(
            f"{wrong[0]!r} is not a Hydra override; after the sweep file give key=value overrides that "
            f"every run gets (e.g. trainer.max_epochs=1)"
        )
    at = spec.command.index(ARGS_MACRO)
    return replace(spec, command=(*spec.command[:at], *overrides, *spec.command[at:]))


def check_metric(path: Path, metric, method: str) -> dict | None:
    if metric is None:
        if method == "bayes":
            raise InputError(f"{path}: method bayes needs metric: {{name: val/mAP_best, goal: maximize}}")
        return None
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
        raise InputError(f"{path}: metric must be {{name: <a key of metrics.json>, goal: maximize|minimize}}")
    goal = metric.get("goal", "minimize")
    if goal not in GOALS:
        raise InputError(f"{path}: metric.goal must be one of {list(GOALS)}, got {goal!r}")
    return {"name": metric["name"], "goal": goal}


def check_command(path: Path, command) -> tuple[str, ...]:
    if not isinstance(command, list) or not all(isinstance(item, str) for item in command):
        raise InputError(
            f"{path}: command is missing; use [${{env}}, ${{interpreter}}, {PROGRAM_MACRO}, "
            f"experiment=<name>, {ARGS_MACRO}] so Hydra receives key=value overrides"
        )
    wrong = [item for item in command if item in NON_HYDRA_MACROS]
    if wrong or ARGS_MACRO not in command or PROGRAM_MACRO not in command:
        instead = f", not {wrong[0]}" if wrong else ""
        raise InputError(
            f"{path}: command must contain {PROGRAM_MACRO} and {ARGS_MACRO} (Hydra overrides of existing keys){instead}"
        )
    if command.index(ARGS_MACRO) < command.index(PROGRAM_MACRO):
        raise InputError(f"{path}: command must put {ARGS_MACRO} after {PROGRAM_MACRO}")
    return tuple(command)


def check_run_cap(path: Path, run_cap) -> int | None:
    if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool) or run_cap < 1):
        raise InputError(f"{path}: run_cap must be a positive integer, got {run_cap!r}")
    return run_cap


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_parameter(path: Path, key: str, spec) -> Parameter:
    """One entry of `parameters`, as W&B reads it (min/max without a distribution: int_uniform or uniform)."""
    where = f"{path}: parameters.{key}"
    if not isinstance(spec, dict) or not spec:
        raise InputError(f"{where} must be a mapping with value, values or distribution/min/max")
    if "parameters" in spec:
        raise InputError(
            f"{where}: nested parameters are not supported; sweep dotted config keys such as model.lfm.mask_ratio"
        )
    unknown = sorted(set(spec) - PARAMETER_KEYS)
    if unknown:
        raise InputError(f"{where}: unsupported key(s) {unknown}; use {sorted(PARAMETER_KEYS)}")
    if "value" in spec:
        return Parameter(key, values=(check_value(where, spec["value"]),), distribution="constant")
    if "values" in spec:
        return check_values(where, key, spec)
    return check_distribution(where, key, spec)


def check_value(where: str, value):
    if value is None:
        # W&B renders None as the string 'None', which Hydra does not read as null.
        raise InputError(f"{where}: null is rendered as 'None' on the command line; write the string 'null' instead")
    return value


def check_values(where: str, key: str, spec: dict) -> Parameter:
    values = spec["values"]
    if spec.get("distribution", "categorical") != "categorical":
        raise InputError(f"{where}: values go with distribution categorical, not {spec['distribution']!r}")
    if not isinstance(values, list) or not values:
        raise InputError(f"{where}.values must be a non-empty list")
    values = tuple(check_value(where, value) for value in values)
    probabilities = spec.get("probabilities")
    if probabilities is not None:
        if (
            not isinstance(probabilities, list)
            or len(probabilities) != len(values)
            or not all(is_number(weight) and weight >= 0 for weight in probabilities)
            or not math.isclose(sum(probabilities), 1.0, abs_tol=1e-6)
        ):
            raise InputError(f"{where}.probabilities must be {len(values)} non-negative numbers that sum to 1")
        probabilities = tuple(float(weight) for weight in probabilities)
    return Parameter(key, values=values, probabilities=probabilities)


def check_distribution(where: str, key: str, spec: dict) -> Parameter:
    low, high = spec.get("min"), spec.get("max")
    if not (is_number(low) and is_number(high)):
        raise InputError(f"{where} needs values: [...], value: x, or numeric min and max")
    integers = isinstance(low, int) and isinstance(high, int)
    distribution = spec.get("distribution") or ("int_uniform" if integers else "uniform")
    if distribution not in CONTINUOUS:
        raise InputError(
            f"{where}.distribution must be one of {list(CONTINUOUS)} with min/max "
            f"(or values: [...]), got {distribution!r}"
        )
    if not low < high:
        raise InputError(f"{where}: min ({low}) must be below max ({high})")
    if distribution == "int_uniform" and not integers:
        raise InputError(f"{where}: int_uniform needs integer min and max")
    if distribution == "log_uniform_values" and low <= 0:
        raise InputError(f"{where}: log_uniform_values needs min > 0, got {low}")
    q = spec.get("q")
    if distribution == "q_uniform" and not (is_number(q) and q > 0):
        raise InputError(f"{where}: q_uniform needs a positive q, got {q!r}")
    return Parameter(key, distribution=distribution, low=low, high=high, q=q)
