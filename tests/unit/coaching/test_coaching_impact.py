"""Impact on seeded synthetic scenarios: a known effect is recovered within its interval; no effect covers 0."""

from __future__ import annotations

import numpy as np
import pytest

from qastream_coaching.impact import aggregate, measure

EFFECT = 0.15


def scores(rng: np.random.Generator, mean: float, n: int) -> list[float]:
    return list(np.clip(rng.normal(mean, 0.1, n), 0, 1))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_seeded_effect_is_recovered_within_the_interval(seed):
    rng = np.random.default_rng(seed)
    before, after = scores(rng, 0.55, 40), scores(rng, 0.55 + EFFECT, 40)
    m = measure(before, after, seed=f"task-{seed}")
    assert m.n_before == m.n_after == 40
    assert m.ci_low is not None and m.ci_high is not None and m.difference is not None
    assert m.ci_low <= EFFECT <= m.ci_high
    assert m.ci_low > 0  # the effect is real, and the interval says so
    assert m.ci_low <= m.difference <= m.ci_high


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_no_effect_covers_zero(seed):
    rng = np.random.default_rng(seed)
    m = measure(scores(rng, 0.7, 30), scores(rng, 0.7, 30), seed=f"task-{seed}")
    assert m.ci_low is not None and m.ci_high is not None
    assert m.ci_low <= 0 <= m.ci_high


def test_the_same_data_gives_the_same_interval():
    rng = np.random.default_rng(7)
    before, after = scores(rng, 0.5, 10), scores(rng, 0.6, 10)
    assert measure(before, after, seed="t") == measure(before, after, seed="t")


def test_too_few_reviews_give_no_interval():
    m = measure([0.5, 0.6], [0.9], seed="t")
    assert m.difference == pytest.approx(0.35) and m.ci_low is None and m.ci_high is None
    assert measure([], [], seed="t").difference is None


def test_group_impact_over_tasks():
    rng = np.random.default_rng(8)
    diffs = list(rng.normal(EFFECT, 0.05, 25))
    g = aggregate(diffs, seed="rule-a")
    assert g.tasks == 25 and g.ci_low is not None and g.ci_high is not None
    assert g.ci_low <= EFFECT <= g.ci_high
    assert aggregate([0.1], seed="x").ci_low is None
