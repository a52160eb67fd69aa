"""Summaries over seeds: mean +/- std, the paired difference to a reference with a t-interval
(scipy.stats), and the smallest difference the seeds could detect (statsmodels' t-test power)."""

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestPower

POWER = 0.8  # the power at which `Difference.detectable` is stated


@dataclass(frozen=True)
class Summary:
    """mean and sample standard deviation over seeds (std is nan with one seed)."""

    mean: float
    std: float
    n: int


def summarize(values: list[float]) -> Summary:
    n = len(values)
    std = float(np.std(values, ddof=1)) if n > 1 else math.nan
    return Summary(float(np.mean(values)), std, n)


@dataclass(frozen=True)
class Difference:
    """method - reference, paired by seed: the mean difference, its t-interval and the smallest
    |difference| that a two-sided paired t-test at the same level would detect with 80% power
    given the measured spread of the per-seed differences (nan where they cannot be computed)."""

    mean: float
    low: float
    high: float
    n: int
    detectable: float = math.nan

    @property
    def half_width(self) -> float:
        """The interval's half-width (nan without an interval)."""
        return (self.high - self.low) / 2

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return "untested (one seed)"
        if self.low > 0:
            return "held"
        if self.high < 0:
            return "contradicted"
        return "not shown"


def detectable_difference(std: float, n: int, confidence: float = 0.95, power: float = POWER) -> float:
    """The smallest true mean difference a two-sided one-sample t-test on n paired differences with
    standard deviation `std` detects with probability `power` (statsmodels solves for the effect size)."""
    if n < 2 or not math.isfinite(std):
        return math.nan
    effect_size = TTestPower().solve_power(nobs=n, alpha=1 - confidence, power=power, alternative="two-sided")
    return float(effect_size) * std


def paired_difference(method: dict[int, float], reference: dict[int, float], confidence: float = 0.95) -> Difference:
    """The difference over the seeds both have, with a t-interval over the per-seed differences."""
    seeds = sorted(set(method) & set(reference))
    if not seeds:
        return Difference(math.nan, math.nan, math.nan, 0)
    differences = [method[seed] - reference[seed] for seed in seeds]
    summary = summarize(differences)
    if summary.n < 2:
        return Difference(summary.mean, math.nan, math.nan, summary.n)
    half_width = float(stats.t.ppf(0.5 + confidence / 2, summary.n - 1)) * summary.std / math.sqrt(summary.n)
    detectable = detectable_difference(summary.std, summary.n, confidence)
    return Difference(summary.mean, summary.mean - half_width, summary.mean + half_width, summary.n, detectable)


def seeds_needed(difference: Difference, half_width: float, confidence: float = 0.95, most: int = 1000) -> float:
    """How many seeds the interval of `difference` needs to be at most +-`half_width`, if the per-seed
    differences keep the spread measured now (nan without a measured spread; inf beyond `most`)."""
    if difference.n < 2 or math.isnan(difference.half_width):
        return math.nan
    t_now = float(stats.t.ppf(0.5 + confidence / 2, difference.n - 1))
    std = difference.half_width * math.sqrt(difference.n) / t_now
    for n in range(2, most + 1):
        if float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n) <= half_width:
            return float(n)
    return math.inf
