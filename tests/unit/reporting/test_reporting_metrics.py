"""The metric formulas against cases computed by hand, and Spearman's ρ from counts against scipy's."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

from qastream_reporting import metrics


def sums(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """The stored sums of (π, y) manual reviews, as the rollup keeps them."""
    out = dict.fromkeys(("w", "wy", "wyy", "ww", "wwy", "wwyy"), 0.0)
    for p, y in pairs:
        w = 1 / p
        out["w"] += w
        out["wy"] += w * y
        out["wyy"] += w * y * y
        out["ww"] += w * w
        out["wwy"] += w * w * y
        out["wwyy"] += w * w * y * y
    return out


def test_hajek_and_horvitz_thompson_on_a_hand_computed_case():
    # Three manual reviews: scores 1.0, 0.5, 0.0 picked with π = 1, 0.5, 0.25 (w = 1, 2, 4), in a scope of
    # N = 10 conversations. By hand:
    #   Hájek ŷ = (1·1 + 2·0.5 + 4·0)/7 = 2/7
    #   V = [0·(1−2/7)² + 2·(0.5−2/7)² + 12·(0−2/7)²] / 7² = (18/196 + 192/196) / 49 = 210/9604
    #   HT = (1 + 1 + 0)/10 = 0.2;  V = (0·1 + 2·0.25 + 12·0)/100 = 0.005
    s = sums([(1.0, 1.0), (0.5, 0.5), (0.25, 0.0)])
    z = 1.959963984540054
    h = metrics.hajek(s)
    assert h["estimate"] == pytest.approx(2 / 7)
    assert h["ci_low"] == pytest.approx(2 / 7 - z * math.sqrt(210 / 9604))
    assert h["ci_high"] == pytest.approx(2 / 7 + z * math.sqrt(210 / 9604))
    ht = metrics.horvitz_thompson(s, 10)
    assert ht["estimate"] == pytest.approx(0.2)
    assert ht["ci_low"] == pytest.approx(0.2 - z * math.sqrt(0.005))
    assert ht["ci_high"] == pytest.approx(0.2 + z * math.sqrt(0.005))


def test_a_census_has_no_sampling_error():
    h = metrics.hajek(sums([(1.0, 0.2), (1.0, 0.9), (1.0, 0.4)]))
    assert h["estimate"] == pytest.approx(0.5)
    assert h["ci_low"] == pytest.approx(h["ci_high"])


def test_no_weighted_reviews_give_no_estimate_rather_than_a_number():
    empty = sums([])
    assert metrics.hajek(empty)["estimate"] is None
    assert metrics.horvitz_thompson(empty, 10)["estimate"] is None


def test_raw_mean_interval_is_students_t():
    ys = [0.2, 0.5, 0.9, 0.7]
    got = metrics.mean_interval(len(ys), sum(ys), sum(y * y for y in ys))
    low, high = stats.t.interval(0.95, len(ys) - 1, loc=sum(ys) / 4, scale=stats.sem(ys))
    assert got["ci_low"] == pytest.approx(low) and got["ci_high"] == pytest.approx(high)


@pytest.mark.parametrize("seed", range(5))
def test_spearman_from_counted_pairs_equals_scipy_on_the_expanded_data(seed):
    rng = random.Random(seed)
    xs = [rng.randint(1, 5) for _ in range(300)]
    ys = [round(rng.random() * 4) / 4 + (x / 20 if seed % 2 else 0) for x in xs]  # many ties
    counted: dict[tuple[float, float], int] = {}
    for x, y in zip(xs, ys, strict=True):
        counted[(x, y)] = counted.get((x, y), 0) + 1
    got = metrics.spearman([(x, y, n) for (x, y), n in counted.items()])
    want = stats.spearmanr(xs, ys)
    assert got["n"] == 300
    assert got["rho"] == pytest.approx(want.statistic, abs=1e-12)
    assert got["p_value"] == pytest.approx(want.pvalue, rel=1e-9, abs=1e-15)


def test_spearman_needs_variation():
    assert metrics.spearman([(3, 0.5, 10)])["rho"] is None
    assert metrics.spearman([])["n"] == 0
    assert metrics.spearman([(1, 1, 1), (2, 3, 1), (3, 2, 1)])["ci_low"] is None  # three pairs: no interval


def interval(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    got = metrics.spearman([(a, b, 1) for a, b in zip(x, y, strict=True)])
    low, high = got["ci_low"], got["ci_high"]
    assert low is not None and high is not None
    return low, high


@pytest.mark.parametrize("r", [0.3, 0.8])
def test_spearman_interval_covers_the_population_rho_about_95_times_in_100(r):
    """Samples of 40 pairs from a bivariate normal with Pearson r, whose Spearman ρ is (6/π)·asin(r/2)."""
    rng = np.random.default_rng(7)
    truth = 6 / math.pi * math.asin(r / 2)
    covered = 0
    for _ in range(400):
        low, high = interval(*rng.multivariate_normal([0, 0], [[1, r], [r, 1]], 40).T)
        covered += low <= truth <= high
    assert 0.93 <= covered / 400 <= 0.99  # a 95% interval: a 90% one covers 0.92 of these samples
    # and about as wide as scipy's bootstrap finds on one sample
    x, y = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], 40).T
    boot = stats.bootstrap(
        (x, y),
        lambda a, b: stats.spearmanr(a, b).statistic,
        paired=True,
        vectorized=False,
        n_resamples=2000,
        random_state=np.random.default_rng(0),
    ).confidence_interval
    low, high = interval(x, y)
    assert high - low == pytest.approx(boot.high - boot.low, rel=0.25)
