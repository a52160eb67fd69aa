import math
import random

import pytest

from lfm.study.stats import paired_difference, student_t_cdf, student_t_quantile, summarize


@pytest.mark.parametrize(
    ("df", "expected"), [(1, 12.706205), (2, 4.302653), (4, 2.776445), (10, 2.228139), (30, 2.042272)]
)
def test_t_quantile_matches_tables(df, expected):
    assert student_t_quantile(0.975, df) == pytest.approx(expected, abs=1e-5)


def test_t_cdf_is_symmetric_and_matches_the_cauchy_case():
    # df = 1 is the Cauchy distribution: F(t) = 1/2 + atan(t)/pi
    for t in (-3.0, -0.5, 0.0, 0.7, 5.0):
        assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-7)


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
