"""The score engine, shared: it lives in qastream_shared.score, because reporting's shadow scoring re-scores
stored ratings with the same rules."""

from qastream_shared.score import (
    CRITICAL_THRESHOLD,
    InvalidRating,
    ReviewResult,
    category_score,
    combine,
    rate,
    score_review,
    value_for_fraction,
)

__all__ = [
    "CRITICAL_THRESHOLD",
    "InvalidRating",
    "ReviewResult",
    "category_score",
    "combine",
    "rate",
    "score_review",
    "value_for_fraction",
]
