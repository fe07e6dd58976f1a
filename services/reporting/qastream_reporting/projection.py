"""The projection: one consumed batch → the current facts and the rollup differences, in one transaction.

For every conversation the batch touches: lock it (two replicas may hold partitions of different topics
about one conversation), load its state, compute its rollup contributions before and after applying the
batch's events (facts.contributions), and write the new state and the difference. Workflow facts
(disputes, assignments, calibrations, coaching) are upserted as their latest state (workflow_projection).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import Gauge, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_reporting import facts
from qastream_reporting.deltas import Compaction, append
from qastream_reporting.facts import (
    ConversationFact,
    ConversationState,
    RatingFact,
    ReviewFact,
    day_of,
    utc,
)
from qastream_reporting.tables import conversations, freshness, reviews
from qastream_reporting.workflow_projection import project_workflow
from qastream_shared.db import array_insert, array_params, columns_of, on_conflict_update
from qastream_shared.events import (
    ConversationIngested,
    ConversationSampled,
    ConversationUpdated,
    CsatRecorded,
    Envelope,
    Purpose,
    Rating,
    ReviewRevised,
    ReviewSubmitted,
)

FRESHNESS = Histogram(
    "qa_reporting_freshness_seconds",
    "From a review event's time to its metrics being committed",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
FRESHNESS_LAST = Gauge("qa_reporting_freshness_last_seconds", "Freshness lag of the last projected review")
NOTIFY_CHANNEL = "qa_reporting:"
Key = tuple[str, str]  # (tenant, conversation)


_CONVERSATION_COLS = columns_of(conversations)
_REVIEW_COLS = columns_of(reviews)
_UPSERT_CONVERSATIONS = array_insert(
    conversations,
    _CONVERSATION_COLS,
    suffix=on_conflict_update(conversations, ("tenant_id", "conversation_id"), _CONVERSATION_COLS),
)
_UPSERT_REVIEWS = array_insert(
    reviews, _REVIEW_COLS, suffix=on_conflict_update(reviews, ("tenant_id", "review_id"), _REVIEW_COLS)
)
_UPSERT_FRESHNESS = array_insert(
    freshness,
    ("tenant_id", "review_time", "projected_at"),
    suffix="ON CONFLICT (tenant_id) DO UPDATE SET projected_at = excluded.projected_at, "
    "review_time = GREATEST(freshness.review_time, excluded.review_time)",
)
_LOCK = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS BIGINT[])) AS k ORDER BY k")
# One primary-key lookup per key, whatever the statistics say. As a plain join, the generic plan cached while
# the table was small hashed the keys and scanned the whole table on every batch (the rows are narrow, so
# a scan looks cheap), until an ANALYZE replanned it: ~2.7% of the machine at a held 400/s (perf), growing
# with the table. LIMIT 1 (the key is unique) keeps the subquery from being flattened back into that join.
_LOAD_CONVERSATIONS = text(
    f"SELECT {', '.join('c.' + c for c in _CONVERSATION_COLS)} "
    "FROM unnest(CAST(:t AS TEXT[]), CAST(:c AS TEXT[])) AS k(t, c) CROSS JOIN LATERAL ("
    "SELECT * FROM conversations c WHERE c.tenant_id = k.t AND c.conversation_id = k.c LIMIT 1) AS c"
)
_LOAD_REVIEWS = text(
    f"SELECT {', '.join('r.' + c for c in _REVIEW_COLS if c != 'ratings')}, r.ratings::text AS ratings "
    "FROM reviews r JOIN unnest(CAST(:t AS TEXT[]), CAST(:c AS TEXT[])) AS k(t, c) "
    "ON r.tenant_id = k.t AND r.conversation_id = k.c"
)


def _lock_key(key: Key) -> int:
    digest = hashlib.blake2b(f"reporting:{key[0]}:{key[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _ratings(ratings: Iterable[Rating]) -> tuple[RatingFact, ...]:
    # tuple.__new__ skips the NamedTuple's Python-level __new__: half the cost, once per rating.
    return tuple([_new(RatingFact, (r.category_id, r.value, r.score, tuple(r.root_causes))) for r in ratings])


_new = tuple.__new__


def _review_from_row(row: Any) -> ReviewFact:
    return ReviewFact(
        review_id=row.review_id,
        kind=row.kind,
        scorecard_id=row.scorecard_id,
        scorecard_version=row.scorecard_version,
        submitted_at=row.submitted_at,
        ratings=tuple(
            RatingFact(r["category_id"], r["value"], r["score"], tuple(r["root_causes"]))
            for r in orjson.loads(row.ratings)
        ),
        revision=row.revision,
        reviewer_id=row.reviewer_id,
        agent_id=row.agent_id,
        team=row.team,
        channel=row.channel,
        score=row.score,
        auto_failed=row.auto_failed,
        passed=row.passed,
        inclusion_probability=row.inclusion_probability,
        time_spent_s=row.time_spent_s,
        pcsat=row.pcsat,
    )


def _review_row(tenant: str, conversation: str, r: ReviewFact) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "review_id": r.review_id,
        "conversation_id": conversation,
        "kind": r.kind,
        "scorecard_id": r.scorecard_id,
        "scorecard_version": r.scorecard_version,
        "revision": r.revision,
        "reviewer_id": r.reviewer_id,
        "agent_id": r.agent_id,
        "team": r.team,
        "channel": r.channel,
        "score": r.score,
        "auto_failed": r.auto_failed,
        "passed": r.passed,
        "inclusion_probability": r.inclusion_probability,
        "time_spent_s": r.time_spent_s,
        "pcsat": r.pcsat,
        "submitted_at": r.submitted_at,
        "day": r.day,
        "ratings": orjson.dumps(
            [
                {
                    "category_id": x.category_id,
                    "value": x.value,
                    "score": x.score,
                    "root_causes": list(x.root_causes),
                }
                for x in r.ratings
            ]
        ).decode(),
    }


def _apply(state: ConversationState, env: Envelope) -> bool:
    """Applies one conversation-scoped event; True when it may have changed the state."""
    data = env.data
    conv = state.conversation
    # Reviews first: most events of a busy stream are.
    if isinstance(data, ReviewSubmitted):
        old = state.reviews.get(data.review_id)
        if old is not None and old.revision > 0:
            return False  # a revision already replaced it
        state.reviews[data.review_id] = ReviewFact(
            review_id=data.review_id,
            kind=data.kind.value,
            scorecard_id=data.scorecard_id,
            scorecard_version=data.scorecard_version,
            submitted_at=utc(data.submitted_at),
            ratings=_ratings(data.ratings),
            reviewer_id=data.reviewer_id,
            agent_id=data.agent_id,
            team=data.team,
            channel=data.channel,
            score=data.score,
            auto_failed=data.auto_failed,
            passed=data.passed,
            inclusion_probability=data.inclusion_probability,
            time_spent_s=data.time_spent_s,
            pcsat=data.pcsat.predicted if data.pcsat else None,
        )
        return True
    if isinstance(data, ConversationIngested):
        c = data.conversation
        fact = ConversationFact(
            day=day_of(c.ended_at, c.started_at, data.ingested_at),
            team=c.team,
            agent_id=c.agent_id,
            channel=c.channel.value,
            csat=c.csat,
            nps=c.nps,
            fcr=c.fcr,
        )
        if conv is not None:  # feedback or a sample may have arrived first; keep what they said
            fact.csat = conv.csat if conv.csat is not None else fact.csat
            fact.nps = conv.nps if conv.nps is not None else fact.nps
            fact.fcr = conv.fcr if conv.fcr is not None else fact.fcr
            fact.manual_probability = conv.manual_probability
        state.conversation = fact
        return True
    if isinstance(data, CsatRecorded | ConversationSampled):
        if conv is None:
            # Feedback or a sample before the conversation itself: a placeholder dated by the event.
            when = data.recorded_at if isinstance(data, CsatRecorded) else data.sampled_at
            conv = state.conversation = ConversationFact(day=day_of(when))
        if isinstance(data, CsatRecorded):
            conv.csat = data.csat if data.csat is not None else conv.csat
            conv.nps = data.nps if data.nps is not None else conv.nps
            conv.fcr = data.fcr if data.fcr is not None else conv.fcr
        elif data.purpose is Purpose.manual:
            conv.manual_probability = data.inclusion_probability
        return True
    if isinstance(data, ReviewRevised):
        old = state.reviews.get(data.review_id)
        if old is not None and old.revision >= data.revision:
            return False
        state.reviews[data.review_id] = ReviewFact(
            review_id=data.review_id,
            kind=data.kind.value,
            scorecard_id=data.scorecard_id or (old.scorecard_id if old else ""),
            scorecard_version=data.scorecard_version or (old.scorecard_version if old else 0),
            submitted_at=old.submitted_at if old else utc(data.revised_at),
            ratings=_ratings(data.ratings),
            revision=data.revision,
            reviewer_id=data.reviewer_id or (old.reviewer_id if old else None),
            agent_id=data.agent_id or (old.agent_id if old else None),
            team=data.team or (old.team if old else None),
            channel=data.channel or (old.channel if old else None),
            score=data.score,
            auto_failed=data.auto_failed,
            passed=data.passed,
            inclusion_probability=old.inclusion_probability if old else None,
            time_spent_s=data.time_spent_s
            if data.time_spent_s is not None
            else (old.time_spent_s if old else None),
            pcsat=old.pcsat if old else None,
        )
        return True
    return False  # ConversationUpdated (escalation, reopening) changes no figure yet


# Conversation-scoped events that name their conversation by id (ConversationIngested carries it whole).
CONVERSATION_EVENTS = (
    ConversationUpdated,
    CsatRecorded,
    ConversationSampled,
    ReviewSubmitted,
    ReviewRevised,
)


async def project(
    session: AsyncSession, events: Sequence[Envelope], compaction: Compaction | None = None
) -> set[str]:
    """Projects one batch; returns the tenants whose figures changed. With a `compaction`, folds the rollup
    deltas when it is due (deltas.py)."""
    touched: dict[Key, list[Envelope]] = defaultdict(list)
    workflow: list[Envelope] = []
    for env in events:
        data = env.data
        if isinstance(data, ConversationIngested):
            touched[(env.tenant, data.conversation.conversation_id)].append(env)
        elif isinstance(data, CONVERSATION_EVENTS):
            touched[(env.tenant, data.conversation_id)].append(env)
        else:
            workflow.append(env)
    changed: set[str] = set()
    if touched:
        changed |= await _project_conversations(session, touched, compaction)
    if workflow:
        changed |= await project_workflow(session, workflow)
    if changed:
        await session.execute(
            # Delivered on commit, to every replica's listener (changes.py) for this schema.
            text(
                "SELECT pg_notify(:channel || current_schema(), t) FROM unnest(CAST(:tenants AS TEXT[])) AS t"
            ),
            {"channel": NOTIFY_CHANNEL, "tenants": sorted(changed)},
        )
    return changed


async def load_states(session: AsyncSession, keys: Sequence[Key]) -> dict[Key, ConversationState]:
    params = {"t": [k[0] for k in keys], "c": [k[1] for k in keys]}
    states = {k: ConversationState() for k in keys}
    for row in await session.execute(_LOAD_CONVERSATIONS, params):
        states[(row.tenant_id, row.conversation_id)].conversation = ConversationFact(
            day=row.day,
            team=row.team,
            agent_id=row.agent_id,
            channel=row.channel,
            csat=row.csat,
            nps=row.nps,
            fcr=row.fcr,
            manual_probability=row.manual_probability,
        )
    for row in await session.execute(_LOAD_REVIEWS, params):
        states[(row.tenant_id, row.conversation_id)].reviews[row.review_id] = _review_from_row(row)
    return states


async def _project_conversations(
    session: AsyncSession, touched: dict[Key, list[Envelope]], compaction: Compaction | None
) -> set[str]:
    keys = sorted(touched)
    await session.execute(_LOCK, {"keys": sorted({_lock_key(k) for k in keys})})
    states = await load_states(session, keys)
    diffs: dict[str, facts.Sums] = defaultdict(facts.Sums)
    conv_rows: list[dict[str, Any]] = []
    review_rows: list[dict[str, Any]] = []
    newest: dict[str, datetime] = {}
    changed: set[str] = set()
    for key in keys:
        tenant = key[0]
        state = states[key]
        facts.accumulate(diffs[tenant], state, -1)
        old_reviews = dict(state.reviews)
        old_conv = None if state.conversation is None else _conv_tuple(state.conversation)
        for env in touched[key]:
            if _apply(state, env) and isinstance(env.data, ReviewSubmitted | ReviewRevised):
                t = utc(env.time)
                if tenant not in newest or t > newest[tenant]:
                    newest[tenant] = t
        facts.accumulate(diffs[tenant], state, 1)
        if state.conversation is not None and _conv_tuple(state.conversation) != old_conv:
            conv_rows.append(_conversation_row(key, state.conversation))
            changed.add(tenant)
        for rid, r in state.reviews.items():
            if old_reviews.get(rid) is not r:
                review_rows.append(_review_row(tenant, key[1], r))
                changed.add(tenant)
    if conv_rows:
        await session.execute(_UPSERT_CONVERSATIONS, array_params(_CONVERSATION_COLS, conv_rows))
    if review_rows:
        await session.execute(_UPSERT_REVIEWS, array_params(_REVIEW_COLS, review_rows))
    appended = 0
    for tenant in sorted(changed):
        appended += await append(session, tenant, diffs[tenant].flat())
    if compaction is not None:
        await compaction.after_batch(session, appended)
    if newest:
        now = datetime.now(UTC)
        await session.execute(
            _UPSERT_FRESHNESS,
            {
                "tenant_id": list(newest),
                "review_time": list(newest.values()),
                "projected_at": [now] * len(newest),
            },
        )
        for t in newest.values():
            lag = max(0.0, (now - t).total_seconds())
            FRESHNESS.observe(lag)
            FRESHNESS_LAST.set(lag)
    return changed


def _conv_tuple(c: ConversationFact) -> tuple[Any, ...]:
    return (c.day, c.team, c.agent_id, c.channel, c.csat, c.nps, c.fcr, c.manual_probability)


def _conversation_row(key: Key, c: ConversationFact) -> dict[str, Any]:
    return {
        "tenant_id": key[0],
        "conversation_id": key[1],
        "day": c.day,
        "team": c.team,
        "agent_id": c.agent_id,
        "channel": c.channel,
        "csat": c.csat,
        "nps": c.nps,
        "fcr": c.fcr,
        "manual_probability": c.manual_probability,
    }
