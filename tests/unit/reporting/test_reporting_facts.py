"""Contributions: what one conversation's state adds to the rollups, and how a change moves it."""

from __future__ import annotations

from datetime import UTC, date, datetime

from qastream_reporting.facts import (
    ConversationFact,
    ConversationState,
    RatingFact,
    ReviewFact,
    contributions,
    difference,
)

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)


def review(rid: str, kind: str, version: int, score: float, **kw) -> ReviewFact:
    return ReviewFact(
        review_id=rid,
        kind=kind,
        scorecard_id="cs",
        scorecard_version=version,
        submitted_at=kw.pop("at", T0),
        ratings=(RatingFact("greeting", 1, score),),
        score=score,
        team="t",
        agent_id="a",
        channel="chat",
        **kw,
    )


def scored(c, view: str, kind: str, version: int | None = None) -> list[float]:
    """(reviews, Σscore) counted under a view and kind, over every version or one."""
    rows = [
        v
        for k, v in c["score_rollup"].items()
        if k[1] == view and k[2] == kind and (version is None or k[4] == version)
    ]
    return [sum(r[0] for r in rows), sum(r[2] for r in rows)]


def test_a_rescored_conversation_counts_once_over_all_versions_and_once_per_version():
    state = ConversationState(
        ConversationFact(day=date(2026, 3, 2)),
        {"v1": review("v1", "auto", 1, 0.4), "v2": review("v2", "auto", 2, 0.8)},
    )
    c = contributions(state)
    assert scored(c, "latest", "auto") == [1, 0.8]
    assert scored(c, "latest", "combined") == [1, 0.8]
    assert scored(c, "version", "auto", 1) == [1, 0.4]
    assert scored(c, "version", "auto", 2) == [1, 0.8]


def test_combined_prefers_the_human_review():
    state = ConversationState(
        None,
        {"a": review("a", "auto", 1, 0.4), "m": review("m", "manual", 1, 0.9, inclusion_probability=0.5)},
    )
    c = contributions(state)
    assert scored(c, "latest", "combined") == [1, 0.9]
    (pair,) = [v for k, v in c["agreement_rollup"].items() if k[1] == "latest"]
    assert pair[0] == 1 and pair[2] == 0.5  # one pair, |0.9 − 0.4|


def test_a_revision_replaces_its_review_in_every_rollup():
    before = ConversationState(None, {"m": review("m", "manual", 1, 0.2, reviewer_id="r")})
    after = ConversationState(None, {"m": review("m", "manual", 1, 0.7, reviewer_id="r", revision=1)})
    diff = difference(before, after)
    counts = [v[0] for v in diff["score_rollup"].values()]
    assert counts and all(n == 0 for n in counts)  # the same review, not a second one
    assert all(abs(v[2] - 0.5) < 1e-12 for v in diff["score_rollup"].values())
    assert "reviewer_rollup" not in diff  # the reviewer's workload did not change


def test_calibration_reviews_never_count_in_quality():
    state = ConversationState(None, {"c": review("c", "calibration", 1, 0.1, reviewer_id="r")})
    c = contributions(state)
    assert "score_rollup" not in c and "category_rollup" not in c
    assert sum(v[0] for v in c["reviewer_rollup"].values()) == 1
