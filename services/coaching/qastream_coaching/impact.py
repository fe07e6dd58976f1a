"""Coaching impact: did the agent's score in the coached category move after the task? Pure (no I/O).

For one completed task: the mean category score over the N reviews before completion and the N after, their
difference, and a bootstrap confidence interval of that difference (scipy.stats.bootstrap, resampling each
side independently). Per team lead or per rule: the mean of the tasks' differences, with a bootstrap interval
over the tasks. Resampling is seeded from the task (or group) id, so the same data always gives the same
interval.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Impact:
    n_before: int
    n_after: int
    mean_before: float | None
    mean_after: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class GroupImpact:
    tasks: int
    mean_difference: float | None
    ci_low: float | None
    ci_high: float | None


def seed_of(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _diff(before: np.ndarray, after: np.ndarray, axis: int = -1) -> np.ndarray:
    result: np.ndarray = after.mean(axis=axis) - before.mean(axis=axis)
    return result


def _interval(samples: tuple[np.ndarray, ...], statistic: object, seed: str) -> tuple[float, float]:
    if all(np.ptp(s) == 0 for s in samples):
        point = float(statistic(*samples))  # type: ignore[operator]
        return point, point  # no spread: every resample gives the same value
    # Imported here: scipy.stats is most of the service's import time, and only a measurement needs it.
    from scipy.stats import bootstrap

    res = bootstrap(
        samples,
        statistic,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(seed_of(seed)),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def measure(before: Sequence[float], after: Sequence[float], *, seed: str) -> Impact:
    """Impact of one task from the category scores before and after it (each in event-time order)."""
    b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    mean_b = float(b.mean()) if len(b) else None
    mean_a = float(a.mean()) if len(a) else None
    diff = mean_a - mean_b if mean_a is not None and mean_b is not None else None
    low = high = None
    if len(b) >= 2 and len(a) >= 2:
        low, high = _interval((b, a), _diff, seed)
    return Impact(len(b), len(a), mean_b, mean_a, diff, low, high)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    result: np.ndarray = x.mean(axis=axis)
    return result


def aggregate(differences: Sequence[float], *, seed: str) -> GroupImpact:
    """The mean impact of a group of tasks (a team lead's, a rule's), with an interval over its tasks."""
    d = np.asarray(differences, dtype=float)
    if not len(d):
        return GroupImpact(0, None, None, None)
    low = high = None
    if len(d) >= 2:
        low, high = _interval((d,), _mean, seed)
    return GroupImpact(len(d), float(d.mean()), low, high)
