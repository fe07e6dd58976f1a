"""The score engine: pure functions from a scorecard, ratings and tenant settings to a review score.

Shared by scoring (every review it publishes) and reporting (shadow scoring of stored ratings).

- Category score = (chosen − min)/(max − min) on the category's scale (binary 0..1, n-point 1..n,
  points 0..max_points).
- Review score, accumulation mode = Σ(score·weight)/Σ(weight) over the counted categories.
  Deduction mode = max(0, 1 − Σ weight·(1 − score)/100): weights are points off 100 (see ScoringSettings).
- N/A (a rating with value None, or no rating for a category) is excluded, or counts as a full score
  when the tenant's na_mode is "pass".
- A critical category scoring below 50% auto-fails the review: the score becomes 0 (auto_fail_mode "zero")
  or stands with the review flagged (auto_fail_mode "flag"). A critical N/A never auto-fails.
- No counted category at all (everything N/A, or every counted weight 0) → score None, passed None,
  unless a critical category failed in "zero" mode, which scores 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from qastream_shared.events import Provenance, Rating
from qastream_shared.scorecard import (
    AutoFailMode,
    Category,
    NaMode,
    Scale,
    Scorecard,
    ScoringMode,
    ScoringSettings,
)

CRITICAL_THRESHOLD = 0.5


class InvalidRating(ValueError):
    """A rating that does not fit the scorecard; `path` names the offending field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class ReviewResult:
    score: float | None
    auto_failed: bool
    passed: bool | None
    # Every category on the card, in card order: its score, or None for N/A (before na_mode applies).
    category_scores: dict[str, float | None]
    failed_critical: tuple[str, ...] = ()


def category_score(scale: Scale, value: int) -> float:
    bounds = scale.bounds()
    if bounds is None:
        raise InvalidRating("value", "the scale is empty (points scale without max_points)")
    lo, hi = bounds
    if not lo <= value <= hi:
        raise InvalidRating("value", f"{value} is outside the scale {lo}..{hi}")
    return (value - lo) / (hi - lo)


def value_for_fraction(scale: Scale, fraction: float) -> int:
    """The scale value nearest to a 0..1 fraction: how scale-agnostic scorers land on a category's scale."""
    bounds = scale.bounds()
    if bounds is None:
        raise InvalidRating("scale", "the scale is empty (points scale without max_points)")
    lo, hi = bounds
    return lo + round(min(1.0, max(0.0, fraction)) * (hi - lo))


def rate(category: Category, value: int | None, provenance: Provenance | None = None) -> Rating:
    """A Rating with its score filled in from the category's scale; value None is N/A."""
    score = None if value is None else category_score(category.scale, value)
    return Rating(category_id=category.category_id, value=value, score=score, provenance=provenance)


def _scores(scorecard: Scorecard, ratings: Iterable[Rating]) -> dict[str, float | None]:
    cats = {c.category_id: c for c in scorecard.categories()}
    given: dict[str, int | None] = {}
    for i, r in enumerate(ratings):
        if r.category_id not in cats:
            raise InvalidRating(f"ratings[{i}].category_id", f"{r.category_id!r} is not on the scorecard")
        if r.category_id in given:
            raise InvalidRating(f"ratings[{i}].category_id", f"{r.category_id!r} is rated twice")
        given[r.category_id] = r.value
    out: dict[str, float | None] = {}
    for cid, cat in cats.items():
        value = given.get(cid)
        try:
            out[cid] = None if value is None else category_score(cat.scale, value)
        except InvalidRating as exc:
            raise InvalidRating(f"ratings[{cid}].value", exc.message) from None
    return out


def score_review(
    scorecard: Scorecard, ratings: Iterable[Rating], settings: ScoringSettings | None = None
) -> ReviewResult:
    settings = settings or ScoringSettings()
    per_category = _scores(scorecard, ratings)
    return combine(scorecard.categories(), per_category, settings)


def combine(
    categories: Sequence[Category], per_category: Mapping[str, float | None], settings: ScoringSettings
) -> ReviewResult:
    """The review result from already-computed category scores (None = N/A)."""
    weighted = 0.0
    total_weight = 0
    lost = 0.0
    counted = False
    failed_critical: list[str] = []
    for cat in categories:
        s = per_category.get(cat.category_id)
        if s is None:
            if settings.na_mode is NaMode.excluded:
                continue
            s = 1.0
        elif cat.critical and s < CRITICAL_THRESHOLD:
            failed_critical.append(cat.category_id)
        counted = counted or cat.weight > 0
        weighted += s * cat.weight
        total_weight += cat.weight
        lost += (1.0 - s) * cat.weight
    if settings.scoring_mode is ScoringMode.deduction:
        score: float | None = max(0.0, 1.0 - lost / 100.0) if counted else None
    else:
        score = weighted / total_weight if total_weight else None
    auto_failed = bool(failed_critical)
    zeroed = auto_failed and settings.auto_fail_mode is AutoFailMode.zero
    if zeroed:  # a failed critical category is a verdict even when nothing else was counted
        score = 0.0
    passed = None if score is None else (score >= settings.pass_mark and not zeroed)
    return ReviewResult(
        score=score,
        auto_failed=auto_failed,
        passed=passed,
        category_scores={c.category_id: per_category.get(c.category_id) for c in categories},
        failed_critical=tuple(failed_critical),
    )
