from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scoring_fixtures import card

from qastream_scoring.engine import InvalidRating, category_score, score_review
from qastream_shared.events import Rating
from qastream_shared.scorecard import (
    AutoFailMode,
    Category,
    NaMode,
    Scale,
    ScaleKind,
    Scorecard,
    ScoringMode,
    ScoringSettings,
)

SCALES = [
    Scale(kind=ScaleKind.binary),
    Scale(kind=ScaleKind.three_point),
    Scale(kind=ScaleKind.four_point),
    Scale(kind=ScaleKind.five_point),
    Scale(kind=ScaleKind.points, max_points=10),
]


def cat(cid: str, weight: int, scale: Scale, critical: bool = False) -> Category:
    return Category(category_id=cid, name=cid, weight=weight, scale=scale, critical=critical, allow_na=True)


def r(cid: str, value: int | None) -> Rating:
    return Rating(category_id=cid, value=value)


def test_category_score_per_scale() -> None:
    assert category_score(SCALES[0], 1) == 1.0
    assert category_score(SCALES[1], 2) == 0.5
    assert category_score(SCALES[2], 2) == pytest.approx(1 / 3)
    assert category_score(SCALES[3], 4) == 0.75
    assert category_score(SCALES[4], 7) == 0.7
    with pytest.raises(InvalidRating):
        category_score(SCALES[3], 0)


def test_worked_example_accumulation_with_na() -> None:
    # greeting binary 1 (w10) → 1.0; empathy 5-point 4 (w30) → 0.75; resolution 3-point 2 (w60) → 0.5;
    # closing N/A (w20) is excluded: (10·1 + 30·0.75 + 60·0.5) / 100 = 0.625.
    sc = card(
        cat("greet", 10, SCALES[0]),
        cat("emp", 30, SCALES[3]),
        cat("res", 60, SCALES[1]),
        cat("close", 20, SCALES[0]),
    )
    ratings = [r("greet", 1), r("emp", 4), r("res", 2), r("close", None)]
    out = score_review(sc, ratings)
    assert out.score == pytest.approx(0.625)
    assert out.passed is False and out.auto_failed is False
    assert out.category_scores == {"greet": 1.0, "emp": 0.75, "res": 0.5, "close": None}
    # N/A counted as pass: (62.5 + 20) / 120.
    assert score_review(sc, ratings, ScoringSettings(na_mode=NaMode.passed)).score == pytest.approx(
        82.5 / 120
    )
    # Deduction: 100 − 30·0.25 − 60·0.5 = 62.5 points; weights are points off 100.
    assert score_review(
        sc, ratings, ScoringSettings(scoring_mode=ScoringMode.deduction)
    ).score == pytest.approx(0.625)
    assert score_review(sc, ratings, ScoringSettings(pass_mark=0.6)).passed is True


def test_deduction_differs_when_weights_do_not_sum_to_100() -> None:
    sc = card(cat("a", 20, SCALES[0]), cat("b", 20, SCALES[0]))
    ratings = [r("a", 0), r("b", 1)]
    assert score_review(sc, ratings).score == 0.5
    assert score_review(
        sc, ratings, ScoringSettings(scoring_mode=ScoringMode.deduction)
    ).score == pytest.approx(0.8)


def test_critical_below_half_zeroes_or_flags() -> None:
    sc = card(cat("a", 50, SCALES[0]), cat("crit", 50, SCALES[3], critical=True))
    ratings = [r("a", 1), r("crit", 2)]  # 2 on 1..5 → 0.25 < 0.5
    zeroed = score_review(sc, ratings)
    assert (zeroed.score, zeroed.auto_failed, zeroed.passed, zeroed.failed_critical) == (
        0.0,
        True,
        False,
        ("crit",),
    )
    flagged = score_review(sc, ratings, ScoringSettings(auto_fail_mode=AutoFailMode.flag))
    assert flagged.score == pytest.approx(0.625) and flagged.auto_failed
    ok = score_review(sc, [r("a", 1), r("crit", 3)])  # exactly 50% does not fail
    assert not ok.auto_failed and ok.score == pytest.approx(0.75)
    na = score_review(sc, [r("a", 1), r("crit", None)])
    assert not na.auto_failed and na.score == 1.0


def test_everything_na_has_no_score() -> None:
    sc = card(cat("a", 50, SCALES[0]))
    out = score_review(sc, [r("a", None)])
    assert out.score is None and out.passed is None


def test_bad_ratings_name_the_field() -> None:
    sc = card(cat("a", 50, SCALES[0]))
    with pytest.raises(InvalidRating, match=r"ratings\[0\].category_id"):
        score_review(sc, [r("zzz", 1)])
    with pytest.raises(InvalidRating, match="outside the scale"):
        score_review(sc, [r("a", 3)])


# --- properties ------------------------------------------------------------------------------

SETTINGS = st.builds(
    ScoringSettings,
    pass_mark=st.floats(0, 1),
    na_mode=st.sampled_from(NaMode),
    auto_fail_mode=st.sampled_from(AutoFailMode),
    scoring_mode=st.sampled_from(ScoringMode),
)


@st.composite
def reviews(draw: st.DrawFn) -> tuple[Scorecard, list[Rating]]:
    n = draw(st.integers(1, 6))
    cats, ratings = [], []
    for i in range(n):
        scale = draw(st.sampled_from(SCALES))
        cats.append(cat(f"c{i}", draw(st.integers(0, 100)), scale, critical=draw(st.booleans())))
        lo, hi = scale.bounds() or (0, 0)
        ratings.append(r(f"c{i}", draw(st.none() | st.integers(lo, hi))))
    return card(*cats), ratings


@given(reviews(), SETTINGS)
def test_score_stays_in_unit_interval(
    review: tuple[Scorecard, list[Rating]], settings: ScoringSettings
) -> None:
    out = score_review(*review, settings)
    assert out.score is None or 0.0 <= out.score <= 1.0


@given(reviews(), SETTINGS, st.data())
def test_na_never_changes_other_categories(
    review: tuple[Scorecard, list[Rating]], settings: ScoringSettings, data: st.DataObject
) -> None:
    sc, ratings = review
    i = data.draw(st.integers(0, len(ratings) - 1))
    with_na = [*ratings[:i], r(ratings[i].category_id, None), *ratings[i + 1 :]]
    before, after = score_review(sc, ratings, settings), score_review(sc, with_na, settings)
    for cid, s in before.category_scores.items():
        if cid != ratings[i].category_id:
            assert after.category_scores[cid] == s


@given(reviews(), SETTINGS)
def test_na_excluded_is_the_same_as_leaving_the_category_unrated(
    review: tuple[Scorecard, list[Rating]], settings: ScoringSettings
) -> None:
    sc, ratings = review
    settings = settings.model_copy(update={"na_mode": NaMode.excluded})
    rated = [x for x in ratings if x.value is not None]
    assert score_review(sc, ratings, settings) == score_review(sc, rated, settings)


@given(reviews(), SETTINGS, st.data())
def test_raising_a_rating_never_lowers_the_score(
    review: tuple[Scorecard, list[Rating]], settings: ScoringSettings, data: st.DataObject
) -> None:
    sc, ratings = review
    i = data.draw(st.integers(0, len(ratings) - 1))
    lo, hi = sc.categories()[i].scale.bounds() or (0, 0)
    old = ratings[i].value if ratings[i].value is not None else lo
    new = data.draw(st.integers(old, hi))
    raised = [*ratings[:i], r(ratings[i].category_id, new), *ratings[i + 1 :]]
    before = score_review(
        sc, [*ratings[:i], r(ratings[i].category_id, old), *ratings[i + 1 :]], settings
    ).score
    after = score_review(sc, raised, settings).score
    assert before is None or after is None or after >= before - 1e-12


@given(reviews(), SETTINGS, st.integers(2, 10))
def test_accumulation_weights_are_scale_invariant(
    review: tuple[Scorecard, list[Rating]], settings: ScoringSettings, k: int
) -> None:
    sc, ratings = review
    settings = settings.model_copy(update={"scoring_mode": ScoringMode.accumulation})
    base = card(*[c.model_copy(update={"weight": c.weight // k}) for c in sc.categories()])
    multiplied = card(*[c.model_copy(update={"weight": (c.weight // k) * k}) for c in sc.categories()])
    a, b = score_review(base, ratings, settings).score, score_review(multiplied, ratings, settings).score
    assert (a is None and b is None) or a == pytest.approx(b)
