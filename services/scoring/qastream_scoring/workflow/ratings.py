"""A manual review's ratings and comments checked against the scorecard version it is rated on.

Every problem raises InvalidRating naming the field (`ratings[2].value`, `comments[0].turn`), so the API
answers 422 before anything is stored. Root causes are offered on negative ratings only: a score below
half the scale, the same line the engine draws for a critical category.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from qastream_scoring.engine import CRITICAL_THRESHOLD, InvalidRating, category_score
from qastream_shared.events import Rating, ReviewComment
from qastream_shared.scorecard import Scorecard


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category_id: str = Field(max_length=64)
    value: int | None = Field(description="the chosen value on the category's scale; null is N/A")
    root_causes: list[str] = Field(default_factory=list, max_length=20)
    comment: str | None = Field(default=None, max_length=5000)


def check_ratings(card: Scorecard, ratings: Sequence[RatingIn], *, complete: bool) -> list[Rating]:
    """The ratings as stored and published, score filled in; `complete` demands every category rated."""
    cats = {c.category_id: c for c in card.categories()}
    out: list[Rating] = []
    seen: set[str] = set()
    for i, r in enumerate(ratings):
        at = f"ratings[{i}]"
        cat = cats.get(r.category_id)
        if cat is None:
            raise InvalidRating(
                f"{at}.category_id",
                f"{r.category_id!r} is not on scorecard {card.scorecard_id!r} version {card.version}",
            )
        if r.category_id in seen:
            raise InvalidRating(f"{at}.category_id", f"{r.category_id!r} is rated twice")
        seen.add(r.category_id)
        if r.value is None:
            if not cat.allow_na:
                raise InvalidRating(f"{at}.value", f"N/A is not allowed for {r.category_id!r}")
            score = None
        else:
            try:
                score = category_score(cat.scale, r.value)
            except InvalidRating as exc:
                raise InvalidRating(f"{at}.value", exc.message) from None
        for j, tag in enumerate(r.root_causes):
            if score is None or score >= CRITICAL_THRESHOLD:
                raise InvalidRating(f"{at}.root_causes", "root causes go on negative ratings only")
            if tag not in cat.root_cause_tags:
                raise InvalidRating(
                    f"{at}.root_causes[{j}]", f"{tag!r} is not a root cause of {r.category_id!r}"
                )
        out.append(
            Rating(
                category_id=r.category_id,
                value=r.value,
                score=score,
                root_causes=list(r.root_causes),
                comment=r.comment,
            )
        )
    if complete:
        missing = [cid for cid in cats if cid not in seen]
        if missing:
            raise InvalidRating("ratings", f"not rated (give a value, or null for N/A): {', '.join(missing)}")
    return out


def check_comments(comments: Sequence[ReviewComment], turns: int) -> list[ReviewComment]:
    for i, c in enumerate(comments):
        if c.turn is not None and c.turn >= turns:
            raise InvalidRating(f"comments[{i}].turn", f"the conversation has {turns} turns (0..{turns - 1})")
    return list(comments)


def merge(old: Sequence[Rating], new: Sequence[Rating]) -> list[Rating]:
    """`old` with the categories `new` rates replaced, in `old`'s order (new categories appended)."""
    by_id = {r.category_id: r for r in new}
    merged = [by_id.pop(r.category_id, r) for r in old]
    return merged + list(by_id.values())
