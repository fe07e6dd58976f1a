"""The review workflow's pure rules: the reviewer split, rating checks, the dispute state machine."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from qastream_scoring.engine import InvalidRating
from qastream_scoring.workflow.disputes import DisputeConflict, check_resolution
from qastream_scoring.workflow.pool import (
    Load,
    Reviewer,
    ReviewerPool,
    choose,
    period_day,
    preference,
    week_start,
)
from qastream_scoring.workflow.ratings import RatingIn, check_comments, check_ratings, merge
from qastream_shared.events import DisputeOutcome, Rating, ReviewComment
from qastream_shared.scorecard import Category, Scale, ScaleKind
from tests.unit.scoring.scoring_fixtures import card

POOL = ReviewerPool(
    reviewers=[
        Reviewer(reviewer_id="ann", weight=3),
        Reviewer(reviewer_id="bob", weight=1),
        Reviewer(reviewer_id="lee", weight=1, leads_team="red"),
    ],
    skip_team_lead=True,
)


def test_split_is_weighted_and_deterministic():
    firsts = Counter(preference(POOL, "t", f"c{i}", ["zed"], "blue")[0].reviewer_id for i in range(6000))
    # Weighted rendezvous: each reviewer comes first with probability weight / Σ weights (3:1:1).
    assert firsts["ann"] / 6000 == pytest.approx(0.6, abs=0.03)
    assert firsts["bob"] / 6000 == pytest.approx(0.2, abs=0.03)
    again = [preference(POOL, "t", f"c{i}", ["zed"], "blue")[0].reviewer_id for i in range(50)]
    assert again == [preference(POOL, "t", f"c{i}", ["zed"], "blue")[0].reviewer_id for i in range(50)]


def test_no_self_review_and_the_team_lead_is_skipped_on_request():
    order = [r.reviewer_id for r in preference(POOL, "t", "c1", ["ann"], "red")]
    assert order == ["bob"]  # ann handled it; lee leads its team
    keep_lead = POOL.model_copy(update={"skip_team_lead": False})
    assert "lee" in [r.reviewer_id for r in preference(keep_lead, "t", "c1", ["ann"], "red")]


def test_quota_moves_the_sample_to_the_next_reviewer_or_the_pool():
    capped = [Reviewer(reviewer_id="a", daily_quota=2), Reviewer(reviewer_id="b", weekly_quota=5)]
    assert choose(capped, {"a": Load(day=1)}) == "a"
    assert choose(capped, {"a": Load(day=2)}) == "b"
    assert choose(capped, {"a": Load(day=2), "b": Load(week=5)}) is None


def test_periods_are_utc_days_and_iso_weeks():
    day = period_day(datetime(2026, 3, 5, 23, 30, tzinfo=UTC))  # a Thursday
    assert day == datetime(2026, 3, 5, tzinfo=UTC)
    assert week_start(day) == datetime(2026, 3, 2, tzinfo=UTC)


def test_pool_refuses_a_reviewer_listed_twice():
    with pytest.raises(ValueError, match="listed twice"):
        ReviewerPool(reviewers=[Reviewer(reviewer_id="a"), Reviewer(reviewer_id="a")])


CARD = card(
    Category(
        category_id="tone",
        name="Tone",
        weight=50,
        scale=Scale(kind=ScaleKind.five_point),
        root_cause_tags=["rude", "cold"],
    ),
    Category(category_id="ok", name="OK", weight=50, scale=Scale(kind=ScaleKind.binary), allow_na=True),
)


def _invalid(ratings: list[RatingIn], *, complete: bool = True) -> InvalidRating:
    with pytest.raises(InvalidRating) as caught:
        check_ratings(CARD, ratings, complete=complete)
    return caught.value


def test_ratings_are_checked_against_the_scorecard_version():
    ok = check_ratings(
        CARD,
        [RatingIn(category_id="tone", value=1, root_causes=["rude"]), RatingIn(category_id="ok", value=None)],
        complete=True,
    )
    assert [(r.category_id, r.score) for r in ok] == [("tone", 0.0), ("ok", None)]
    assert _invalid([RatingIn(category_id="nope", value=1)]).path == "ratings[0].category_id"
    assert _invalid([RatingIn(category_id="tone", value=6)]).path == "ratings[0].value"
    assert _invalid([RatingIn(category_id="ok", value=1), RatingIn(category_id="tone", value=None)]).path == (
        "ratings[1].value"
    )  # tone forbids N/A
    assert (
        _invalid([RatingIn(category_id="tone", value=5, root_causes=["rude"])]).path
        == "ratings[0].root_causes"
    )
    assert _invalid([RatingIn(category_id="tone", value=1, root_causes=["late"])]).path == (
        "ratings[0].root_causes[0]"
    )
    missing = _invalid([RatingIn(category_id="tone", value=3)])
    assert missing.path == "ratings" and "ok" in missing.message
    assert check_ratings(CARD, [RatingIn(category_id="tone", value=3)], complete=False)[0].score == 0.5


def test_comments_name_real_turns():
    check_comments([ReviewComment(text="fine"), ReviewComment(turn=2, text="here")], turns=3)
    with pytest.raises(InvalidRating) as caught:
        check_comments([ReviewComment(turn=3, text="x")], turns=3)
    assert caught.value.path == "comments[0].turn"


def test_merge_replaces_only_the_new_categories():
    old = [Rating(category_id="tone", value=2, score=0.25), Rating(category_id="ok", value=0, score=0.0)]
    merged = merge(old, [Rating(category_id="ok", value=1, score=1.0)])
    assert [(r.category_id, r.value) for r in merged] == [("tone", 2), ("ok", 1)]


def test_dispute_state_machine():
    check_resolution("open", DisputeOutcome.accepted, "tone", ["tone"], None)
    check_resolution("open", DisputeOutcome.rejected, None, [], "scored right")
    with pytest.raises(DisputeConflict):
        check_resolution("accepted", DisputeOutcome.rejected, None, [], "again")
    with pytest.raises(InvalidRating, match="needs the new ratings"):
        check_resolution("open", DisputeOutcome.partially_accepted, None, [], None)
    with pytest.raises(InvalidRating) as caught:
        check_resolution("open", DisputeOutcome.accepted, "tone", ["ok"], None)
    assert caught.value.path == "ratings[0].category_id"
    with pytest.raises(InvalidRating) as caught:
        check_resolution("open", DisputeOutcome.rejected, None, [], None)
    assert caught.value.path == "comment"
