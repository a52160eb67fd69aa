"""Summaries over seeds: mean +/- std and the paired difference to a reference with a 95% t-interval."""

import math
from dataclasses import dataclass
from functools import cache


def student_t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom (Simpson's rule on the density)."""
    if t < 0:
        return 1.0 - student_t_cdf(-t, df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    intervals = 2000
    step = t / intervals
    total = density(0.0) + density(t)
    total += sum((4 if i % 2 else 2) * density(i * step) for i in range(1, intervals))
    return 0.5 + total * step / 3


@cache
def student_t_quantile(q: float, df: int) -> float:
    """The `q` quantile of Student's t with `df` degrees of freedom (bisection on the CDF)."""
    if not 0.5 <= q < 1:
        raise ValueError(f"q must be in [0.5, 1), got {q}")
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < q:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if student_t_cdf(middle, df) < q else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Summary:
    """mean and sample standard deviation over seeds (std is nan with one seed)."""

    mean: float
    std: float
    n: int


def summarize(values: list[float]) -> Summary:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return Summary(mean, std, n)


@dataclass(frozen=True)
class Difference:
    """method - reference, paired by seed: the mean difference and its 95% t-interval (nan with one pair)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return "untested (one seed)"
        if self.low > 0:
            return "held"
        if self.high < 0:
            return "contradicted"
        return "not shown"


def paired_difference(method: dict[int, float], reference: dict[int, float], confidence: float = 0.95) -> Difference:
    """The difference over the seeds both have, with a t-interval over the per-seed differences."""
    seeds = sorted(set(method) & set(reference))
    if not seeds:
        return Difference(math.nan, math.nan, math.nan, 0)
    differences = [method[seed] - reference[seed] for seed in seeds]
    summary = summarize(differences)
    if summary.n < 2:
        return Difference(summary.mean, math.nan, math.nan, summary.n)
    half_width = student_t_quantile(0.5 + confidence / 2, summary.n - 1) * summary.std / math.sqrt(summary.n)
    return Difference(summary.mean, summary.mean - half_width, summary.mean + half_width, summary.n)
