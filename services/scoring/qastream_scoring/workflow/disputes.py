"""The dispute state machine: open → accepted | partially_accepted | rejected, each final.

Accepting or partly accepting needs the new ratings (only of the disputed category, when one is named);
rejecting needs a comment. A resolved dispute cannot be resolved again (DisputeConflict → 409).
"""

from __future__ import annotations

from collections.abc import Sequence

from qastream_scoring.engine import InvalidRating
from qastream_shared.events import DisputeOutcome

OPEN = "open"


class DisputeConflict(Exception):
    """The dispute is not in a state that allows this (HTTP 409)."""


def check_resolution(
    status: str,
    outcome: DisputeOutcome,
    category_id: str | None,
    rated: Sequence[str],
    comment: str | None,
) -> None:
    """`rated`: the category ids the resolution gives new ratings for."""
    if status != OPEN:
        raise DisputeConflict(f"the dispute is already resolved ({status})")
    if outcome is DisputeOutcome.rejected:
        if rated:
            raise InvalidRating("ratings", "a rejected dispute changes no rating")
        if not comment:
            raise InvalidRating("comment", "say why the dispute is rejected")
        return
    if not rated:
        raise InvalidRating("ratings", f"{outcome.value} needs the new ratings")
    if category_id is not None:
        for i, cid in enumerate(rated):
            if cid != category_id:
                raise InvalidRating(
                    f"ratings[{i}].category_id", f"the dispute is about {category_id!r} only, not {cid!r}"
                )
