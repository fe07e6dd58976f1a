from __future__ import annotations

from datetime import UTC, datetime

import pytest
from scoring_fixtures import card

from qastream_scoring.default_scorecard import default_scorecard
from qastream_scoring.validation import InvalidScorecard, next_version, validate_scorecard
from qastream_shared.scorecard import Category, Scale, ScaleKind, Scorecard, ScorerRef

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def cat(cid: str, **kw: object) -> Category:
    base: dict[str, object] = {
        "category_id": cid,
        "name": cid,
        "weight": 10,
        "scale": Scale(kind=ScaleKind.binary),
    }
    return Category.model_validate(base | kw)


def paths(sc: Scorecard) -> dict[str, str]:
    return {p.path: p.message for p in validate_scorecard(sc)}


def test_default_scorecard_is_valid_and_names_a_scorer_everywhere() -> None:
    sc = default_scorecard()
    assert validate_scorecard(sc) == []
    names = {c.category_id for c in sc.categories()}
    assert names == {
        "greeting", "empathy-tone", "conduct", "accuracy", "solution-offered", "resolution", "compliance-disclosures",
        "personalization", "closing", "efficiency",
    }  # fmt: skip
    assert all(c.scorer is not None for c in sc.categories())


def test_weights_all_zero() -> None:
    assert "weights all zero" in paths(card(cat("a", weight=0), cat("b", weight=0)))["groups"]


def test_duplicate_category_ids() -> None:
    assert "duplicate" in paths(card(cat("a"), cat("a")))["groups[0].categories[1].category_id"]


def test_empty_points_scale() -> None:
    problems = paths(card(cat("a", scale=Scale(kind=ScaleKind.points))))
    assert "empty scale" in problems["groups[0].categories[0].scale.max_points"]
    problems = paths(card(cat("a", scale=Scale(kind=ScaleKind.binary, max_points=3))))
    assert "only a points scale" in problems["groups[0].categories[0].scale.max_points"]


def test_unknown_scorer_and_bad_params() -> None:
    problems = paths(
        card(
            cat("a", scorer=ScorerRef(name="telepathy")),
            cat("b", scorer=ScorerRef(name="phrases", params={"required_regex": ["("]})),
        )
    )
    assert "unknown scorer 'telepathy'" in problems["groups[0].categories[0].scorer.name"]
    assert "invalid regex" in problems["groups[0].categories[1].scorer.params.required_regex"]
    assert (
        "extra"
        in paths(card(cat("a", scorer=ScorerRef(name="timing", params={"nope": 1}))))[
            "groups[0].categories[0].scorer.params.nope"
        ].lower()
    )


def test_critical_category_that_cannot_fail() -> None:
    never = ScorerRef(name="phrases", params={})  # no required and no forbidden phrases: always passes
    assert (
        "can never fail"
        in paths(card(cat("a", critical=True, scorer=never)))["groups[0].categories[0].critical"]
    )
    can = ScorerRef(name="phrases", params={"forbidden": ["idiot"]})
    assert paths(card(cat("a", critical=True, scorer=can))) == {}
    assert paths(card(cat("a", critical=True))) == {}  # rated by hand: every scale can score below 50%


def test_next_version_is_immutable_and_idempotent() -> None:
    first = next_version(None, card(cat("a")), NOW)
    assert first.version == 1 and first.published_at == NOW
    edited = first.model_copy(update={"name": "renamed"})
    second = next_version(first, edited, NOW)
    assert second.version == 2 and second.name == "renamed"
    assert first.version == 1 and first.name == "t"
    assert next_version(second, second.model_copy(update={"version": 7}), NOW) is second


def test_next_version_rejects_invalid_drafts() -> None:
    first = next_version(None, card(cat("a")), NOW)
    with pytest.raises(InvalidScorecard) as err:
        next_version(first, card(cat("a", weight=0)), NOW)
    assert [p.path for p in err.value.problems] == ["groups"]
    other = card(cat("a")).model_copy(update={"scorecard_id": "other"})
    with pytest.raises(InvalidScorecard, match="scorecard_id"):
        next_version(first, other, NOW)
