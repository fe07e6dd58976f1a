"""α from counted pairs equals the krippendorff package on the expanded reliability data."""

from __future__ import annotations

import random

import krippendorff
import pytest

from qastream_shared.agreement import alpha_of_pairs


@pytest.mark.parametrize(("seed", "level"), [(1, "ordinal"), (2, "nominal"), (3, "interval"), (4, "ordinal")])
def test_alpha_of_counted_pairs_equals_alpha_of_the_expanded_data(seed, level):
    rng = random.Random(seed)
    values = [0.0, 0.25, 0.5, 0.75, 1.0]
    units = [(rng.choice(values), rng.choice(values)) for _ in range(rng.randint(20, 60))]
    units += [(v, v) for v in rng.choices(values, k=40)]  # some agreement to measure
    counted: dict[tuple[float, float], int] = {}
    for u in units:
        counted[u] = counted.get(u, 0) + 1
    want = krippendorff.alpha(
        reliability_data=[[a for a, _ in units], [b for _, b in units]], level_of_measurement=level
    )
    got = alpha_of_pairs([(a, b, n) for (a, b), n in counted.items()], level)
    assert got == pytest.approx(want, abs=1e-12)


def test_alpha_is_undefined_without_two_values_or_pairs():
    assert alpha_of_pairs([(1.0, 1.0, 5)], "ordinal") is None
    assert alpha_of_pairs([], "ordinal") is None
    assert alpha_of_pairs([(0.0, 1.0, 0)], "ordinal") is None
