"""Krippendorff's α (the `krippendorff` package): one rule for every agreement figure (calibration sessions
in scoring, AutoQA against people in reporting).

Reliability data is one row per rater and one column per unit, None where a rater did not rate the unit.
α is None where it is undefined: fewer than two distinct values in all the data (no disagreement to
measure against) or no unit rated twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import krippendorff
import numpy as np

Level = Literal["nominal", "ordinal", "interval", "ratio"]


def alpha(data: Sequence[Sequence[float | None]], level: Level) -> float | None:
    matrix = np.array([[np.nan if v is None else float(v) for v in row] for row in data], dtype=float)
    if matrix.size == 0:
        return None
    values = matrix[~np.isnan(matrix)]
    pairable = (np.sum(~np.isnan(matrix), axis=0) >= 2).any()
    if len(np.unique(values)) < 2 or not pairable:
        return None
    return _defined(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))


def alpha_of_pairs(pairs: Sequence[tuple[float, float, int]], level: Level) -> float | None:
    """α of two raters from counted pairs (first rater's value, second's, how many units had them): what
    `alpha` gives on the expanded reliability data, without building it (the package's value counts)."""
    pairs = [p for p in pairs if p[2] > 0]
    if not pairs:
        return None
    domain = np.unique([v for a, b, _ in pairs for v in (a, b)])
    if len(domain) < 2:
        return None
    index = {float(v): i for i, v in enumerate(domain)}
    rows = np.zeros((len(pairs), len(domain)))
    for i, (a, b, _) in enumerate(pairs):
        rows[i, index[float(a)]] += 1
        rows[i, index[float(b)]] += 1
    counts = np.repeat(rows, [int(n) for _, _, n in pairs], axis=0)
    return _defined(krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=level))


def _defined(result: float) -> float | None:
    return None if math.isnan(result) else float(result)
