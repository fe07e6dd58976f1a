"""Shadow scoring: stored ratings re-scored under another scorecard version, beside their live scores.

The score rules are scoring's own (qastream_shared.score). A rating keeps its chosen value; its score is
recomputed on the shadow version's scale. Categories the shadow card does not have drop out; a value
outside the shadow scale counts as N/A there and is reported in `unmapped`. Tenant scoring settings do not
travel on the event stream, so the shadow uses the default settings (pass mark 80%, N/A excluded, auto-fail
zeroes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from qastream_reporting import metrics
from qastream_shared.score import InvalidRating, category_score, combine
from qastream_shared.scorecard import Scorecard, ScoringSettings


@dataclass
class Tally:
    """The sums metrics.quality reads, for one set of review scores."""

    n: float = 0
    n_scored: float = 0
    sum_score: float = 0.0
    sum_score_sq: float = 0.0
    n_pass_known: float = 0
    n_passed: float = 0
    n_auto_failed: float = 0

    def add(self, score: float | None, passed: bool | None, auto_failed: bool) -> None:
        self.n += 1
        if score is not None:
            self.n_scored += 1
            self.sum_score += score
            self.sum_score_sq += score * score
        if passed is not None:
            self.n_pass_known += 1
            self.n_passed += passed
        self.n_auto_failed += auto_failed

    def figures(self) -> dict[str, Any]:
        return metrics.quality({f.name: getattr(self, f.name) for f in fields(self)})


@dataclass
class Shadow:
    card: Scorecard
    settings: ScoringSettings
    live: Tally
    shadow: Tally
    unmapped: int = 0

    def add(
        self,
        score: float | None,
        passed: bool | None,
        auto_failed: bool,
        ratings: Iterable[Mapping[str, Any]],
    ) -> None:
        self.live.add(score, passed, auto_failed)
        cats = {c.category_id: c for c in self.card.categories()}
        per_category: dict[str, float | None] = {}
        for r in ratings:
            cat = cats.get(r["category_id"])
            if cat is None or r["value"] is None:
                continue
            try:
                per_category[cat.category_id] = category_score(cat.scale, r["value"])
            except InvalidRating:
                self.unmapped += 1
        result = combine(self.card.categories(), per_category, self.settings)
        self.shadow.add(result.score, result.passed, result.auto_failed)


def start(card: Scorecard) -> Shadow:
    return Shadow(card, ScoringSettings(), Tally(), Tally())
