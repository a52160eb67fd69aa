import math
import random

import pytest
from scipy import stats

from lfm.study.stats import detectable_difference, paired_difference, summarize

T_975 = {1: 12.706205, 2: 4.302653, 4: 2.776445, 10: 2.228139, 30: 2.042272}  # printed t tables, 95% two-sided


@pytest.mark.parametrize(("df", "quantile"), sorted(T_975.items()))
def test_interval_half_width_uses_the_tabled_t_quantile(df, quantile):
    differences = [0.01 * ((seed * 7) % 5) - 0.02 for seed in range(df + 1)]
    difference = paired_difference(dict(enumerate(differences)), dict.fromkeys(range(df + 1), 0.0))
    half = quantile * summarize(differences).std / math.sqrt(df + 1)
    assert (difference.high - difference.low) / 2 == pytest.approx(half, rel=1e-6)


@pytest.mark.parametrize("n", [3, 5, 8, 20])
def test_detectable_difference_has_80_percent_power(n):
    """Independent check: the power of the two-sided paired t-test at that difference, from the
    noncentral t distribution, is 0.8."""
    std = 0.04
    detectable = detectable_difference(std, n)
    critical = stats.t.ppf(0.975, n - 1)
    noncentrality = detectable / std * math.sqrt(n)
    power = stats.nct.sf(critical, n - 1, noncentrality) + stats.nct.cdf(-critical, n - 1, noncentrality)
    assert power == pytest.approx(0.8, abs=1e-4)


def test_detectable_difference_shrinks_with_more_seeds_and_comes_with_each_difference():
    assert detectable_difference(0.04, 4) > detectable_difference(0.04, 8) > detectable_difference(0.04, 16)
    assert math.isnan(detectable_difference(0.04, 1))
    difference = paired_difference({0: 0.50, 1: 0.55, 2: 0.61}, {0: 0.45, 1: 0.52, 2: 0.55})
    assert difference.detectable == pytest.approx(detectable_difference(summarize([0.05, 0.03, 0.06]).std, 3))


def test_summarize_gives_the_sample_standard_deviation():
    summary = summarize([1.0, 2.0, 4.0])
    assert summary.mean == pytest.approx(7 / 3)
    assert summary.std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert math.isnan(summarize([3.0]).std)


def test_paired_difference_pairs_by_seed_and_uses_the_t_interval():
    method = {0: 0.50, 1: 0.55, 2: 0.61, 7: 0.9}  # seed 7 has no reference: not used
    reference = {0: 0.45, 1: 0.52, 2: 0.55}
    difference = paired_difference(method, reference)
    differences = [0.05, 0.03, 0.06]
    mean = sum(differences) / 3
    half = 4.302653 * summarize(differences).std / math.sqrt(3)
    assert difference.n == 3
    assert difference.mean == pytest.approx(mean)
    assert (difference.low, difference.high) == pytest.approx((mean - half, mean + half), abs=1e-6)
    assert difference.verdict == "held"


def test_verdicts():
    assert paired_difference({0: 0.1, 1: 0.2}, {0: 0.3, 1: 0.4}).verdict == "contradicted"
    assert paired_difference({0: 0.1, 1: 0.5}, {0: 0.3, 1: 0.3}).verdict == "not shown"
    assert paired_difference({0: 0.5}, {0: 0.3}).verdict == "untested (one seed)"
    assert paired_difference({0: 0.5}, {1: 0.3}).n == 0


def test_the_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = random.Random(0)
    covered = 0
    trials = 2000
    for _ in range(trials):
        reference = {seed: rng.gauss(0.5, 0.05) for seed in range(3)}
        method = {seed: value + 0.02 + rng.gauss(0, 0.01) for seed, value in reference.items()}
        difference = paired_difference(method, reference)
        covered += difference.low <= 0.02 <= difference.high
    assert 0.93 < covered / trials < 0.97
