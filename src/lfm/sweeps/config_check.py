"""Check a sweep against the program's Hydra config: every swept key exists, every run's overrides compose."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lfm.errors import InputError
from lfm.sweeps.command import hydra_overrides
from lfm.sweeps.spec import SweepSpec

# Beyond this many grid points only each value (the others at their first value) is composed.
MAX_COMPOSED_POINTS = 200


def program_config(spec: SweepSpec) -> tuple[Path, str]:
    """(conf directory, config name) of an entry point: src/train.py reads conf/train.yaml."""
    program = Path(spec.program).resolve()
    if not program.is_file():
        raise InputError(
            f"{spec.path}: program {spec.program} not found from {Path.cwd()}; run the sweep from the project root"
        )
    conf_dir = program.parent.parent / "conf"
    if not (conf_dir / f"{program.stem}.yaml").is_file():
        raise InputError(f"{spec.path}: program {spec.program} has no Hydra config {conf_dir / program.stem}.yaml")
    return conf_dir, program.stem


def compose_overrides(conf_dir: Path, config_name: str, overrides: list[str]) -> dict:
    """The composed (unresolved) config for these overrides, as a plain dict; InputError if Hydra rejects them."""
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        message = " ".join(str(error).split())
        raise InputError(f"Hydra rejects the overrides {' '.join(overrides)}: {message}") from None
    return OmegaConf.to_container(cfg, resolve=False)


def has_key(config: dict, key: str) -> bool:
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def is_group(conf_dir: Path, key: str) -> bool:
    return (conf_dir / key.replace(".", "/")).is_dir()


def configs_with_each_group_choice(spec: SweepSpec, conf_dir: Path, config_name: str) -> list[dict]:
    """The configs the fixed overrides compose with each value of each swept config group (a group such as
    `regularizer` brings keys of its own, e.g. model.dropout2d.p or a user's model.regularizers.<label>.p)."""
    return [
        compose_overrides(conf_dir, config_name, hydra_overrides(spec, {parameter.key: value}))
        for parameter in spec.parameters
        if is_group(conf_dir, parameter.key)
        for value in parameter.bounds_and_values()
    ]


def check_keys_exist(spec: SweepSpec, conf_dir: Path, config_name: str, base: dict) -> None:
    """Each swept key is a config group (conf/<group>/) or a key of the config the fixed overrides compose,
    alone or with a value of a swept config group."""
    with_groups = None
    for parameter in spec.parameters:
        if is_group(conf_dir, parameter.key) or has_key(base, parameter.key):
            continue
        if with_groups is None:
            with_groups = configs_with_each_group_choice(spec, conf_dir, config_name)
        if any(has_key(config, parameter.key) for config in with_groups):
            continue
        raise InputError(
            f"{spec.path}: parameters.{parameter.key} is not a key of the config that {spec.program} "
            f"composes with {' '.join(hydra_overrides(spec, {})) or 'no overrides'}; a sweep can only "
            f"set existing keys (see conf/)"
        )


def points_to_compose(spec: SweepSpec, points: list[dict]) -> list[dict]:
    """All proposed points when few, else every value of each parameter with the others at their first value."""
    if spec.method == "grid" and len(points) <= MAX_COMPOSED_POINTS:
        return points
    first = {parameter.key: parameter.bounds_and_values()[0] for parameter in spec.parameters}
    return [{**first, parameter.key: value} for parameter in spec.parameters for value in parameter.bounds_and_values()]


def check_against_config(spec: SweepSpec, points: list[dict]) -> dict:
    """Compose the program's config for the sweep's runs (the first one Hydra rejects stops the sweep here);
    returns the config of the fixed overrides alone."""
    conf_dir, config_name = program_config(spec)
    base = compose_overrides(conf_dir, config_name, hydra_overrides(spec, {}))
    check_keys_exist(spec, conf_dir, config_name, base)
    for point in points_to_compose(spec, points):
        try:
            compose_overrides(conf_dir, config_name, hydra_overrides(spec, point))
        except InputError as error:
            raise InputError(f"{spec.path}: {error}") from None
    return base
