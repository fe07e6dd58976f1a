"""Scorecard validation and publishing, as pure functions.

`validate_scorecard` returns every problem, each naming its field path (e.g.
`groups[1].categories[0].scorer.name`), so the API can answer 422 listing them all. The rules:
- duplicate ids: group ids and category ids are unique across the card;
- empty scale: a points scale needs max_points; other scales must not set it;
- weights all zero: at least one category must carry weight, or no review can be scored;
- unknown scorer: a category's scorer must be in the registry, and its params must parse;
- a critical category that can't fail: auto-fail needs a possible score below 50%. Every non-empty scale has
  one (its minimum scores 0), so what remains is an AutoQA scorer whose params can never produce one, e.g.
  `phrases` with neither required nor forbidden phrases, or `timing` with every threshold off.
  A critical category with weight 0 is allowed: it gates the review without counting towards its score.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from qastream_scoring.autoqa.base import params_problems
from qastream_scoring.autoqa.registry import DEFAULT_REGISTRY, Registry
from qastream_shared.scorecard import ScaleKind, Scorecard


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str


class InvalidScorecard(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems))
        self.problems = problems


def validate_scorecard(scorecard: Scorecard, registry: Registry = DEFAULT_REGISTRY) -> list[Problem]:
    problems: list[Problem] = []
    group_ids: set[str] = set()
    category_ids: set[str] = set()
    for gi, group in enumerate(scorecard.groups):
        if group.group_id in group_ids:
            problems.append(Problem(f"groups[{gi}].group_id", f"duplicate group id {group.group_id!r}"))
        group_ids.add(group.group_id)
        for ci, cat in enumerate(group.categories):
            at = f"groups[{gi}].categories[{ci}]"
            if cat.category_id in category_ids:
                problems.append(Problem(f"{at}.category_id", f"duplicate category id {cat.category_id!r}"))
            category_ids.add(cat.category_id)
            scale = cat.scale
            bounds = scale.bounds()
            if bounds is None:
                problems.append(
                    Problem(f"{at}.scale.max_points", "empty scale: a points scale needs max_points")
                )
            elif scale.kind is not ScaleKind.points and scale.max_points is not None:
                problems.append(
                    Problem(
                        f"{at}.scale.max_points", f"only a points scale sets max_points, not {scale.kind}"
                    )
                )
            parsed = None
            scorer = None
            if cat.scorer is not None:
                scorer = registry.get(cat.scorer.name)
                if scorer is None:
                    known = ", ".join(registry.names())
                    problems.append(
                        Problem(f"{at}.scorer.name", f"unknown scorer {cat.scorer.name!r} (known: {known})")
                    )
                else:
                    try:
                        parsed = scorer.parse(cat.scorer.params, scale)
                    except ValidationError as exc:
                        for loc, msg in params_problems(exc):
                            problems.append(Problem(f"{at}.scorer.params.{loc}".rstrip("."), msg))
            if cat.critical and scorer is not None and parsed is not None and not scorer.can_fail(parsed):
                problems.append(
                    Problem(
                        f"{at}.critical",
                        f"critical, but scorer {scorer.name!r} with these params can never fail it",
                    )
                )
    if not any(c.weight > 0 for c in scorecard.categories()):
        problems.append(Problem("groups", "weights all zero: at least one category needs a weight above 0"))
    return problems


def next_version(
    existing: Scorecard | None,
    draft: Scorecard,
    published_at: datetime,
    registry: Registry = DEFAULT_REGISTRY,
) -> Scorecard:
    """The version to publish for `draft`: existing.version + 1 (1 for a new scorecard).

    Published versions are immutable: this never changes `existing`, it returns a new object. A draft whose
    content equals the latest version returns that version unchanged, so re-publishing is idempotent.
    Raises InvalidScorecard when the draft has problems or names a different scorecard.
    """
    problems = validate_scorecard(draft, registry)
    if existing is not None and draft.scorecard_id != existing.scorecard_id:
        problems.append(
            Problem("scorecard_id", f"draft is for {draft.scorecard_id!r}, not {existing.scorecard_id!r}")
        )
    if problems:
        raise InvalidScorecard(problems)
    if existing is not None and _content(draft) == _content(existing):
        return existing
    version = existing.version + 1 if existing is not None else 1
    return draft.model_copy(update={"version": version, "published_at": published_at}, deep=True)


def _content(card: Scorecard) -> dict[str, object]:
    return card.model_dump(exclude={"version", "published_at"})
