"""AutoQA entry point: one conversation × one scorecard → ratings with provenance and the review result.

Sync and pure apart from the optional llm scorer's HTTP call. A category whose scorer throws (or whose params
do not parse) is N/A with the error in its provenance; the review always completes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from qastream_scoring.autoqa.base import ConversationView, Finding, Scorer
from qastream_scoring.autoqa.registry import DEFAULT_REGISTRY, Registry
from qastream_scoring.engine import ReviewResult, category_score, combine, value_for_fraction
from qastream_shared.conversation import Conversation
from qastream_shared.events import Provenance, Rating
from qastream_shared.scorecard import Category, Scorecard, ScoringSettings


@dataclass(frozen=True, slots=True)
class PreparedCategory:
    category: Category
    scorer: Scorer | None
    parsed: Any
    error: str | None  # why this category cannot be auto-scored (unknown scorer, bad params)


@dataclass(frozen=True, slots=True)
class PreparedScorecard:
    scorecard: Scorecard
    categories: tuple[PreparedCategory, ...]
    scorer_versions: dict[str, str]


@dataclass(frozen=True, slots=True)
class AutoReview:
    scorecard_id: str
    scorecard_version: int
    ratings: list[Rating]
    result: ReviewResult
    scorer_versions: dict[str, str]  # every scorer this scorecard uses → its version
    # Set by the runner, from the same view: the pCSAT model's version and its prediction's JSON (as
    # PredictedCsat.model_dump_json writes it; never built as a model on the service's path).
    pcsat_version: str | None = None
    pcsat_json: bytes | None = None


def prepare(scorecard: Scorecard, registry: Registry = DEFAULT_REGISTRY) -> PreparedScorecard:
    """Resolve and compile each category's scorer once per scorecard version."""
    out = []
    for cat in scorecard.categories():
        ref = cat.scorer
        scorer = registry.get(ref.name) if ref else None
        parsed: Any = None
        error = None
        if ref is None:
            error = "no AutoQA scorer on this category"
        elif scorer is None:
            error = f"unknown scorer {ref.name!r}"
        else:
            try:
                parsed = scorer.parse(ref.params, cat.scale)
            except ValidationError as exc:
                error = f"invalid params for {ref.name}: {exc.errors()[0]['msg']}"
        out.append(PreparedCategory(cat, scorer if error is None else None, parsed, error))
    versions = {p.scorer.name: p.scorer.version for p in out if p.scorer is not None}
    return PreparedScorecard(scorecard, tuple(out), dict(sorted(versions.items())))


_PREPARED: OrderedDict[tuple[int, int], tuple[Scorecard, Registry, PreparedScorecard]] = OrderedDict()
_PREPARED_MAX = 256


def _prepared(scorecard: Scorecard, registry: Registry) -> PreparedScorecard:
    # Keyed by identity; the entry holds the scorecard, so its id cannot be reused while cached.
    key = (id(scorecard), id(registry))
    hit = _PREPARED.get(key)
    if hit is not None:
        _PREPARED.move_to_end(key)
        return hit[2]
    prepared = prepare(scorecard, registry)
    _PREPARED[key] = (scorecard, registry, prepared)
    if len(_PREPARED) > _PREPARED_MAX:
        _PREPARED.popitem(last=False)
    return prepared


def score_conversation(
    conversation: Conversation | ConversationView,
    scorecard: Scorecard | PreparedScorecard,
    settings: ScoringSettings | None = None,
    registry: Registry = DEFAULT_REGISTRY,
) -> AutoReview:
    prepared = scorecard if isinstance(scorecard, PreparedScorecard) else _prepared(scorecard, registry)
    settings = settings or ScoringSettings()
    view = conversation if isinstance(conversation, ConversationView) else ConversationView(conversation)
    ratings: list[Rating] = []
    scores: dict[str, float | None] = {}
    for pc in prepared.categories:
        cat = pc.category
        if pc.scorer is None:
            ratings.append(Rating(category_id=cat.category_id, comment=pc.error))
            scores[cat.category_id] = None
            continue
        error = None
        try:
            finding = view.finding(pc.scorer, pc.parsed)
        except Exception as exc:  # any scorer bug or endpoint failure makes this one category N/A
            error = f"{type(exc).__name__}: {exc}"[:500]
            finding = Finding(None, 0.0)
        value = None if finding.fraction is None else value_for_fraction(cat.scale, finding.fraction)
        score = None if value is None else category_score(cat.scale, value)
        scores[cat.category_id] = score
        provenance = Provenance(
            scorer=pc.scorer.name,
            version=pc.scorer.version,
            confidence=finding.confidence,
            evidence=list(finding.evidence),
            error=error,
        )
        ratings.append(
            Rating(
                category_id=cat.category_id,
                value=value,
                score=score,
                comment=finding.note,
                provenance=provenance,
            )
        )
    result = combine([pc.category for pc in prepared.categories], scores, settings)
    sc = prepared.scorecard
    return AutoReview(sc.scorecard_id, sc.version, ratings, result, prepared.scorer_versions)
