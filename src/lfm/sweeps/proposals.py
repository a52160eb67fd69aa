"""Which runs a sweep makes: every point of a grid, or seeded random draws."""

import itertools
import math
import random

from lfm.errors import InputError
from lfm.sweeps.spec import Parameter, SweepSpec

# Random search over a small discrete space stops after this many draws per run without a new point.
MAX_DRAWS_PER_RUN = 100


def grid_points(spec: SweepSpec) -> list[dict]:
    """The Cartesian product of the values, the first parameter varying slowest."""
    continuous = [parameter.key for parameter in spec.parameters if not parameter.is_discrete]
    if continuous:
        raise InputError(
            f"{spec.path}: method grid needs values: [...] for every parameter; {continuous[0]} has a "
            f"distribution (use method random, or list the values)"
        )
    keys = [parameter.key for parameter in spec.parameters]
    return [dict(zip(keys, combination)) for combination in itertools.product(*(p.values for p in spec.parameters))]


def draw(parameter: Parameter, rng: random.Random):
    """One value of a parameter, as W&B's random search draws it (plain Python numbers)."""
    if parameter.is_discrete:
        return rng.choices(parameter.values, weights=parameter.probabilities)[0]
    if parameter.distribution == "int_uniform":
        return rng.randint(parameter.low, parameter.high)
    if parameter.distribution == "log_uniform_values":
        return math.exp(rng.uniform(math.log(parameter.low), math.log(parameter.high)))
    value = rng.uniform(parameter.low, parameter.high)
    if parameter.distribution == "q_uniform":
        # rounding keeps 0.1 * 3 from printing as 0.30000000000000004 on the command line
        return round(round(value / parameter.q) * parameter.q, 10)
    return value


def random_points(parameters: tuple[Parameter, ...], count: int, seed: int) -> list[dict]:
    """`count` distinct draws; the same seed gives the same runs in the same order (so a sweep resumes)."""
    rng = random.Random(seed)
    points: list[dict] = []
    for _ in range(count * MAX_DRAWS_PER_RUN):
        if len(points) == count:
            break
        point = {parameter.key: draw(parameter, rng) for parameter in parameters}
        if point not in points:
            points.append(point)
    return points


def sweep_size(spec: SweepSpec, count: int | None) -> int | None:
    """How many runs the whole sweep makes: --count, else the file's run_cap; None for a whole grid."""
    limit = count if count is not None else spec.run_cap
    if limit is not None and limit < 1:
        raise InputError(f"--count must be a positive number of runs, got {limit}")
    if limit is None and spec.method != "grid":
        raise InputError(f"{spec.path}: method {spec.method} has no end; pass --count N (or set run_cap)")
    return limit


def propose_runs(spec: SweepSpec, count: int | None, seed: int) -> list[dict]:
    """The sweep's runs, in order: a grid in full (or its first `count`), or `count` random draws.

    `count` (or the file's run_cap) is the size of the whole sweep, not of this invocation, so
    running the same command again proposes the same runs.
    """
    limit = sweep_size(spec, count)
    if spec.method == "grid":
        points = grid_points(spec)
        return points[:limit] if limit is not None else points
    return random_points(spec.parameters, limit, seed)
