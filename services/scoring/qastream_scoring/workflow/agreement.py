"""Agreement between raters: Krippendorff's α (`qastream_shared.agreement`, shared with reporting's
AutoQA-vs-human α), % agreement, and alignment.

Alignment of a grader to a benchmark, over the units both rated, is
Σ(1 − |grader − benchmark| / max) · (max / total max), where max is the unit's scale span (highest minus
lowest value, so complete disagreement scores 0) and total max is Σ max over those units: a per-unit
agreement weighted by how much room the scale gives to disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qastream_shared.agreement import Level, alpha
from qastream_shared.scorecard import Scale, ScaleKind

__all__ = ["Level", "ai_vs_human", "alignment", "alpha", "calibration_results", "level_of", "matrix"]


def level_of(scale: Scale) -> Level:
    """Binary scales are nominal; point scales are ordinal."""
    return "nominal" if scale.kind is ScaleKind.binary else "ordinal"


def percent_agreement(pairs: Sequence[tuple[float, float]]) -> float | None:
    return sum(1 for a, b in pairs if a == b) / len(pairs) if pairs else None


def alignment(
    grader: Mapping[Any, float], benchmark: Mapping[Any, float], span: Mapping[Any, float]
) -> float | None:
    both = [u for u in grader if u in benchmark and span.get(u)]
    total = sum(span[u] for u in both)
    if not total:
        return None
    return sum((1 - abs(grader[u] - benchmark[u]) / span[u]) * (span[u] / total) for u in both)


def matrix(
    raters: Sequence[str], units: Sequence[Any], values: Mapping[str, Mapping[Any, float | None]]
) -> list[list[float | None]]:
    """Reliability data from rater → unit → value (N/A and unrated both missing)."""
    return [[values.get(r, {}).get(u) for u in units] for r in raters]


def calibration_results(
    categories: Sequence[tuple[str, Scale]],
    conversation_ids: Sequence[str],
    ratings: Mapping[str, Mapping[tuple[str, str], int | None]],
    benchmark: str | None,
) -> tuple[float | None, dict[str, float | None], dict[str, float]]:
    """(overall α, α per category, alignment per participant) of a calibration session.

    `ratings` maps each rater to (conversation, category) → value (None = N/A). Per category the unit is a
    conversation, at the category's level. Overall the unit is a (conversation, category) pair and the value
    its score on 0..1, so scales of different length compare: ordinal, or nominal when every category is
    binary. Alignment is each rater's but the benchmark's, over the units they and the benchmark rated.
    """
    raters = sorted(ratings)
    by_category: dict[str, float | None] = {}
    spans: dict[tuple[str, str], float] = {}
    fractions: dict[str, dict[tuple[str, str], float | None]] = {r: {} for r in raters}
    for cid, scale in categories:
        lo, hi = scale.bounds() or (0, 0)
        per_unit = {r: {c: ratings[r].get((c, cid)) for c in conversation_ids} for r in raters}
        by_category[cid] = alpha(matrix(raters, conversation_ids, per_unit), level_of(scale))
        for c in conversation_ids:
            spans[(c, cid)] = hi - lo
            for r in raters:
                v = ratings[r].get((c, cid))
                fractions[r][(c, cid)] = None if v is None or hi == lo else (v - lo) / (hi - lo)
    units = [(c, cid) for cid, _ in categories for c in conversation_ids]
    overall_level: Level = "nominal" if all(s.kind is ScaleKind.binary for _, s in categories) else "ordinal"
    overall = alpha(matrix(raters, units, fractions), overall_level)
    aligned: dict[str, float] = {}
    if benchmark is not None and benchmark in ratings:
        bench = {u: v for u, v in ratings[benchmark].items() if v is not None}
        for r in raters:
            if r == benchmark:
                continue
            mine = {u: v for u, v in ratings[r].items() if v is not None}
            a = alignment(mine, bench, spans)
            if a is not None:
                aligned[r] = a
    return overall, by_category, aligned


def ai_vs_human(scale: Scale, pairs: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """α (the category's level) and % agreement between AutoQA (first) and people (second) on one category."""
    return {
        "level": level_of(scale),
        "pairs": len(pairs),
        "alpha": alpha([[a for a, _ in pairs], [m for _, m in pairs]], level_of(scale)),
        "percent_agreement": percent_agreement(pairs),
    }
