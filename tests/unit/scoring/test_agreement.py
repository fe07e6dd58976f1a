"""Krippendorff's α through workflow.agreement, against the published example and by hand."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest

from qastream_scoring.workflow.agreement import alignment, alpha, calibration_results, percent_agreement
from qastream_shared.scorecard import Scale, ScaleKind

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers, 12 units,
# values 1..5, None where an observer gave no value.
_: int | None = None
PUBLISHED = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
]


@pytest.mark.parametrize(
    ("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_alpha_matches_the_published_example_and_the_package(level, published):
    ours = alpha(PUBLISHED, level)
    assert ours is not None
    assert round(ours, 3) == published
    matrix = np.array([[np.nan if v is None else v for v in row] for row in PUBLISHED], dtype=float)
    assert ours == krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)


def test_alpha_is_none_where_undefined():
    assert alpha([[1, 1, 1], [1, 1, 1]], "ordinal") is None  # one value: nothing to disagree about
    assert alpha([[1, _, _], [_, 2, _]], "ordinal") is None  # no unit rated twice
    assert alpha([], "nominal") is None


def test_alpha_by_hand_for_two_coders_nominal():
    # Units (a,a) (a,b) (b,b): coincidences o_aa=2, o_ab=o_ba=1, o_bb=2; n=6, n_a=n_b=3.
    # D_o = (o_ab + o_ba)/n = 2/6; D_e = (n_a·n_b + n_b·n_a)/(n(n−1)) = 18/30; α = 1 − (1/3)/(3/5) = 4/9.
    assert alpha([[0, 0, 1], [0, 1, 1]], "nominal") == pytest.approx(4 / 9)


def test_percent_agreement_and_alignment():
    assert percent_agreement([(1, 1), (2, 3), (4, 4), (0, 0)]) == 0.75
    assert percent_agreement([]) is None
    # Spans 4 (5-point) and 1 (binary): ((4 − 2) + (1 − 0)) / (4 + 1) = 3/5.
    assert alignment({"u": 3, "v": 1}, {"u": 5, "v": 1}, {"u": 4, "v": 1}) == pytest.approx(0.6)
    assert alignment({"u": 3}, {"w": 3}, {"u": 4, "w": 4}) is None  # nothing rated by both


def test_calibration_results_with_a_benchmark():
    five, binary = Scale(kind=ScaleKind.five_point), Scale(kind=ScaleKind.binary)
    ratings = {
        "bench": {("c1", "tone"): 5, ("c2", "tone"): 1, ("c1", "ok"): 1, ("c2", "ok"): 0},
        "ann": {("c1", "tone"): 4, ("c2", "tone"): 1, ("c1", "ok"): 1, ("c2", "ok"): 1},
    }
    overall, per_category, aligned = calibration_results(
        [("tone", five), ("ok", binary)], ["c1", "c2"], ratings, "bench"
    )
    # ann vs bench: tone (4 − 1)/4 + (4 − 0)/4, ok (1 − 0)/1 + (1 − 1)/1 → (3 + 4 + 1 + 0) / (4 + 4 + 1 + 1).
    assert aligned == {"ann": pytest.approx(0.8)}
    assert per_category["ok"] == alpha([[1, 0], [1, 1]], "nominal")
    assert per_category["tone"] == alpha([[5, 1], [4, 1]], "ordinal")
    assert overall == alpha([[1.0, 0.0, 1.0, 0.0], [0.75, 0.0, 1.0, 1.0]], "ordinal")
