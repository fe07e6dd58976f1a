"""What reporting keeps of each conversation, and what every fact of it adds to the rollups (pure).

A conversation's state (its facts and the current revision of each of its reviews) determines everything
it contributes to every rollup. The projection loads the state of the conversations a batch touches,
computes their contributions before and after applying the batch, and writes the difference. So a
ReviewRevised replaces its earlier revision in every figure, a conversation re-scored under a new scorecard
version moves its "latest" contribution from the old review to the new one, and a conversation arriving
after its reviews adds its coverage then: each rule is stated once, in `contributions`.

Views. Every review counts under view "version" (figures filtered to one scorecard version). Under view
"latest" only the review with the highest scorecard version of its conversation and kind counts, so a figure
over all versions counts a re-scored conversation once. Kind "combined" holds one review per conversation:
the human one when there is one (the newest), else AutoQA's. Calibration reviews never count in quality
figures; they count only in reviewer workload.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import add, sub
from typing import Any, NamedTuple

# Rollup name → (dimension columns, measure columns). Every measure is a sum, so rollups add and subtract.
SCORE_DIMS = ("day", "view", "kind", "scorecard_id", "scorecard_version", "team", "agent_id", "channel")
ROLLUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "score_rollup": (
        SCORE_DIMS,
        (
            "n",
            "n_scored",
            "sum_score",
            "sum_score_sq",
            "n_pass_known",
            "n_passed",
            "n_auto_failed",
            # Design weights w = 1/π of manual reviews with a known inclusion probability (Hájek / HT).
            "n_weighted",
            "w",
            "wy",
            "wyy",
            "ww",
            "wwy",
            "wwyy",
        ),
    ),
    "category_rollup": ((*SCORE_DIMS, "category_id"), ("n", "n_scored", "sum_score")),
    "root_cause_rollup": ((*SCORE_DIMS, "category_id", "root_cause"), ("n",)),
    "agreement_rollup": (
        ("day", "view", "scorecard_id", "scorecard_version", "team", "agent_id", "channel", "category_id"),
        ("n", "n_equal", "sum_abs_diff", "sum_manual", "sum_auto"),
    ),
    # (AutoQA's score, the person's) of one category, counted: Krippendorff's α from counts (api.agreement).
    "agreement_pairs": (
        (
            "day",
            "view",
            "scorecard_id",
            "scorecard_version",
            "team",
            "agent_id",
            "channel",
            "category_id",
            "auto_score",
            "manual_score",
        ),
        ("n",),
    ),
    "conversation_rollup": (
        ("day", "team", "agent_id", "channel"),
        (
            "n",
            "n_auto_reviewed",
            "n_manual_reviewed",
            "n_csat",
            "sum_csat",
            "n_csat_satisfied",
            "n_nps",
            "n_promoters",
            "n_detractors",
            "n_fcr",
            "n_fcr_yes",
            "n_pcsat",
            "sum_pcsat",
            "n_pcsat_surveyed",
        ),
    ),
    # (survey CSAT, another measure of the same conversation) pairs, counted: Spearman's ρ from counts.
    "csat_pairs": (("day", "team", "agent_id", "channel", "measure", "csat", "value"), ("n",)),
    "reviewer_rollup": (("day", "kind", "reviewer_id", "team", "agent_id"), ("n", "n_timed", "sum_time_s")),
}
QUALITY_KINDS = ("auto", "manual")
VIEWS = ("version", "latest")
SATISFIED_CSAT = 4  # CSAT 4 or 5 of 5 is a satisfied customer
PROMOTER, DETRACTOR = 9, 6  # NPS: 9-10 promoters, 0-6 detractors


class RatingFact(NamedTuple):
    """A tuple, not a frozen dataclass: a batch builds one per rating, and a tuple is built several times
    faster."""

    category_id: str
    value: int | None
    score: float | None
    root_causes: tuple[str, ...] = ()


@dataclass(slots=True)
class ReviewFact:
    review_id: str
    kind: str
    scorecard_id: str
    scorecard_version: int
    submitted_at: datetime
    ratings: tuple[RatingFact, ...]
    revision: int = 0
    reviewer_id: str | None = None
    agent_id: str | None = None
    team: str | None = None
    channel: str | None = None
    score: float | None = None
    auto_failed: bool = False
    passed: bool | None = None
    inclusion_probability: float | None = None
    time_spent_s: float | None = None
    pcsat: float | None = None

    @property
    def day(self) -> date:
        return self.submitted_at.date()


@dataclass(slots=True)
class ConversationFact:
    day: date
    team: str | None = None
    agent_id: str | None = None
    channel: str | None = None
    csat: int | None = None
    nps: int | None = None
    fcr: bool | None = None
    # The inclusion probability of the manual sample that picked it, for reviews that do not carry one.
    manual_probability: float | None = None


@dataclass(slots=True)
class ConversationState:
    conversation: ConversationFact | None = None
    reviews: dict[str, ReviewFact] = field(default_factory=dict)


Contributions = dict[str, dict[tuple[Any, ...], list[float]]]
Key = tuple[Any, ...]


@dataclass(slots=True)
class Sums:
    """Contributions being added up (`accumulate`); `flat()` gives them as Contributions.

    Score, category and root-cause rows are held per review scope (day, scorecard, version, team, agent,
    channel) and the (view, kind) places its review counts in, then (categories, causes) per category (and
    cause): one review counts in up to four places with the same values, so they are added once, not four
    times, and a short key is hashed per rating instead of a ten-column one. That loop was a third of the
    projection's time, and the score rows another fifth of what was left.
    """

    rows: dict[str, dict[Key, list[float]]] = field(default_factory=lambda: {name: {} for name in ROLLUPS})
    scores: dict[Key, list[float]] = field(default_factory=dict)
    categories: dict[Key, dict[str, list[float]]] = field(default_factory=dict)
    causes: dict[Key, dict[tuple[str, str], list[float]]] = field(default_factory=dict)

    def flat(self) -> Contributions:
        out = {name: rows for name, rows in self.rows.items() if rows}
        held: dict[str, dict[Key, dict[Any, list[float]]]] = {
            "score_rollup": {k: {(): v} for k, v in self.scores.items()}
        }
        held |= {"category_rollup": self.categories, "root_cause_rollup": self.causes}
        for name, by_scope in held.items():
            rows: dict[Key, list[float]] = {}
            for (day, scorecard, version, team, agent, channel, places), by in by_scope.items():
                for view, kind in places:
                    for part, values in by.items():
                        key = (day, view, kind, scorecard, version, team, agent, channel, *_parts(part))
                        row = rows.get(key)
                        if row is None:
                            rows[key] = list(values)
                        else:
                            row[:] = map(add, row, values)
            if rows:
                out[name] = rows
        return out


def _parts(sub: str | tuple[str, ...]) -> tuple[str, ...]:
    return (sub,) if isinstance(sub, str) else sub


def _order(r: ReviewFact) -> tuple[int, datetime, str]:
    return (r.scorecard_version, r.submitted_at, r.review_id)


def picks(reviews: Iterable[ReviewFact]) -> dict[tuple[str, str, int | None], ReviewFact]:
    """(view, kind, scorecard version or None under "latest") → the review that counts there.

    Several reviews of one kind and version (two reviewers, say) all count under "version"; the pick is the
    newest and decides "combined" and the AutoQA-vs-human pairs.
    """
    out: dict[tuple[str, str, int | None], ReviewFact] = {}
    for r in sorted((r for r in reviews if r.kind in QUALITY_KINDS), key=_order):
        out[("version", r.kind, r.scorecard_version)] = r
        out[("latest", r.kind, None)] = r
    return out


def counted(
    state: ConversationState, chosen: dict[tuple[str, str, int | None], ReviewFact] | None = None
) -> list[tuple[str, str, ReviewFact]]:
    """Every (view, kind, review) a quality figure counts: kind is the review's own, or "combined".
    `chosen` is `picks` of the state's reviews, when the caller has it already."""
    reviews = [r for r in state.reviews.values() if r.kind in QUALITY_KINDS]
    if chosen is None:
        chosen = picks(reviews)
    out = [("version", r.kind, r) for r in reviews]
    latest = {id(r) for k, r in chosen.items() if k[0] == "latest"}
    out += [("latest", r.kind, r) for r in reviews if id(r) in latest]
    versions = {r.scorecard_version for r in reviews}
    for v in versions:
        combined = chosen.get(("version", "manual", v)) or chosen.get(("version", "auto", v))
        if combined is not None:
            out.append(("version", "combined", combined))
    combined = chosen.get(("latest", "manual", None)) or chosen.get(("latest", "auto", None))
    if combined is not None:
        out.append(("latest", "combined", combined))
    return out


def _dims(r: ReviewFact, conv: ConversationFact | None) -> tuple[str, str, str]:
    """team, agent, channel: the review's own, else the conversation's ("" when neither knows)."""
    return (
        r.team or (conv.team if conv else None) or "",
        r.agent_id or (conv.agent_id if conv else None) or "",
        r.channel or (conv.channel if conv else None) or "",
    )


def weight(r: ReviewFact, conv: ConversationFact | None) -> float | None:
    p = r.inclusion_probability or (conv.manual_probability if conv else None)
    return 1.0 / p if p else None


def contributions(state: ConversationState) -> Contributions:
    out = Sums()
    accumulate(out, state, 1)
    return out.flat()


def _add_score(
    out: Sums,
    review: tuple[ReviewFact, str, str, str],
    places: list[tuple[str, str]],
    values: tuple[float, ...],
    sign: int,
) -> None:
    """Adds `sign` × one review's score-rollup values at the places it counts in with them."""
    if not places:
        return
    r, team, agent, channel = review
    scope = (r.day, r.scorecard_id, r.scorecard_version, team, agent, channel, tuple(places))
    row = out.scores.get(scope)
    if row is None:
        out.scores[scope] = [sign * v for v in values]
    else:
        row[:] = map(add if sign == 1 else sub, row, values)


def accumulate(out: Sums, state: ConversationState, sign: int) -> None:
    """Adds `sign` × the state's contributions into `out`: the projection adds −before and +after of each
    conversation into one tenant's difference, so the batch's difference is built in one pass."""
    tables = out.rows

    def put(table: str, key: tuple[Any, ...], values: Sequence[float]) -> None:
        rows = tables[table]
        row = rows.get(key)
        if row is None:
            rows[key] = [sign * v for v in values]
        else:
            for i, v in enumerate(values):
                row[i] += sign * v

    conv = state.conversation
    chosen = picks(state.reviews.values())
    places: dict[int, tuple[ReviewFact, list[tuple[str, str]]]] = {}
    for view, kind, r in counted(state, chosen):
        places.setdefault(id(r), (r, []))[1].append((view, kind))
    for r, where in places.values():
        team, agent, channel = _dims(r, conv)
        y = r.score
        yy = y or 0.0
        plain = (1, y is not None, yy, yy * yy, r.passed is not None, bool(r.passed), r.auto_failed)
        unweighted = (*plain, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        at = (r, team, agent, channel)
        # Only under kind "manual" does a scored review carry its design weight (not under "combined").
        w = weight(r, conv) if (r.kind == "manual" and y is not None) else None
        if w is None:
            _add_score(out, at, where, unweighted, sign)
        else:
            weighted = (*plain, 1, w, w * yy, w * yy * yy, w * w, w * w * yy, w * w * yy * yy)
            _add_score(out, at, [p for p in where if p[1] == "manual"], weighted, sign)
            _add_score(out, at, [p for p in where if p[1] != "manual"], unweighted, sign)
        scope = (r.day, r.scorecard_id, r.scorecard_version, team, agent, channel, tuple(where))
        # Inlined: ten or more ratings per review make this the hot loop.
        categories = out.categories.get(scope)
        if categories is None:
            categories = out.categories[scope] = {}
        causes = None
        for category_id, _, s, root_causes in r.ratings:
            row = categories.get(category_id)
            if row is None:
                row = categories[category_id] = [0, 0, 0.0]
            row[0] += sign
            if s is not None:
                row[1] += sign
                row[2] += sign * s
            for cause in root_causes:
                if causes is None:
                    causes = out.causes.get(scope)
                    if causes is None:
                        causes = out.causes[scope] = {}
                cause_row = causes.get((category_id, cause))
                if cause_row is None:
                    causes[(category_id, cause)] = [sign]
                else:
                    cause_row[0] += sign

    for (view, kind, version), manual in chosen.items():
        if kind != "manual":
            continue
        auto = chosen.get((view, "auto", version))
        if auto is None or auto.scorecard_version != manual.scorecard_version:
            continue
        auto_scores = {x.category_id: x.score for x in auto.ratings}
        team, agent, channel = _dims(manual, conv)
        for rating in manual.ratings:
            a = auto_scores.get(rating.category_id)
            if rating.score is None or a is None:
                continue
            pair_key = (
                manual.day,
                view,
                manual.scorecard_id,
                manual.scorecard_version,
                team,
                agent,
                channel,
                rating.category_id,
            )
            put(
                "agreement_rollup",
                pair_key,
                (1, abs(rating.score - a) < 1e-9, abs(rating.score - a), rating.score, a),
            )
            put("agreement_pairs", (*pair_key, a, rating.score), (1,))

    for r in state.reviews.values():
        if r.kind in ("manual", "calibration") and r.reviewer_id:
            team, agent, _ = _dims(r, conv)
            timed = r.time_spent_s is not None
            put(
                "reviewer_rollup",
                (r.day, r.kind, r.reviewer_id, team, agent),
                (1, timed, r.time_spent_s or 0.0),
            )

    if conv is not None:
        dims = (conv.day, conv.team or "", conv.agent_id or "", conv.channel or "")
        latest_auto = chosen.get(("latest", "auto", None))
        combined = chosen.get(("latest", "manual", None)) or latest_auto
        pcsat = latest_auto.pcsat if latest_auto else None
        csat, nps, fcr = conv.csat, conv.nps, conv.fcr
        put(
            "conversation_rollup",
            dims,
            (
                1,
                ("latest", "auto", None) in chosen,
                ("latest", "manual", None) in chosen,
                csat is not None,
                csat or 0,
                csat is not None and csat >= SATISFIED_CSAT,
                nps is not None,
                nps is not None and nps >= PROMOTER,
                nps is not None and nps <= DETRACTOR,
                fcr is not None,
                bool(fcr),
                pcsat is not None,
                pcsat or 0.0,
                pcsat is not None and csat is not None,
            ),
        )
        if csat is not None and combined is not None and combined.score is not None:
            put("csat_pairs", (*dims, "qa", csat, combined.score), (1,))
        if csat is not None and pcsat is not None:
            put("csat_pairs", (*dims, "pcsat", csat, pcsat), (1,))


def changed_rows(diff: Contributions) -> Contributions:
    """The difference without the rows that cancelled out (a review that moved away and back, say)."""
    out: Contributions = {}
    for table, rows in diff.items():
        kept = {k: v for k, v in rows.items() if any(abs(x) > 1e-12 for x in v)}
        if kept:
            out[table] = kept
    return out


def difference(before: ConversationState, after: ConversationState) -> Contributions:
    """What replacing one state of a conversation by another changes in the rollups."""
    out = Sums()
    accumulate(out, before, -1)
    accumulate(out, after, 1)
    return changed_rows(out.flat())


def day_of(*times: datetime | None) -> date:
    for t in times:
        if t is not None:
            return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC).date()
    raise ValueError("no time")


def utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)
