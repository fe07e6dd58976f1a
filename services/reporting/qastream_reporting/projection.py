"""The projection: one consumed batch → the current facts and the rollup differences, in one transaction.

For every conversation the batch touches: lock it (two replicas may hold partitions of different topics
about one conversation), load its state, compute its rollup contributions before and after applying the
batch's events (facts.contributions), and write the new state and the difference. Workflow facts
(disputes, assignments, calibrations, coaching) are upserted as their latest state.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson
from prometheus_client import Gauge, Histogram
from sqlalchemy import TextClause, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_reporting import facts
from qastream_reporting.facts import (
    ConversationFact,
    ConversationState,
    RatingFact,
    ReviewFact,
)
from qastream_reporting.tables import (
    assignments,
    calibrations,
    coaching_impacts,
    coaching_tasks,
    conversations,
    disputes,
    freshness,
    is_count,
    reviews,
    rollups,
    scorecards,
)
from qastream_shared.events import (
    AssignmentChanged,
    CalibrationClosed,
    CalibrationOpened,
    CoachingImpactMeasured,
    CoachingTaskEvent,
    ConversationIngested,
    ConversationSampled,
    ConversationUpdated,
    CsatRecorded,
    DisputeOpened,
    DisputeResolved,
    Envelope,
    Purpose,
    Rating,
    ReviewRevised,
    ReviewSubmitted,
    ScorecardPublished,
)

FRESHNESS = Histogram(
    "qa_reporting_freshness_seconds",
    "From a review event's time to its metrics being committed",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
FRESHNESS_LAST = Gauge("qa_reporting_freshness_last_seconds", "Freshness lag of the last projected review")
NOTIFY_CHANNEL = "qa_reporting:"
_DIALECT = postgresql.dialect()
Key = tuple[str, str]  # (tenant, conversation)


def _sql_type(column: Any) -> str:
    return str(column.type.compile(dialect=_DIALECT))


def upsert(table: Any, columns: Sequence[str], conflict: Sequence[str], *, update: str = "set") -> TextClause:
    """`INSERT … SELECT FROM unnest(arrays) ON CONFLICT (…)`: replace the row ("set"), add to it ("add"),
    or keep it ("keep"). JSONB travels as text arrays and is cast per row."""
    arrays = ", ".join(
        f"CAST(:{c} AS {'TEXT' if _sql_type(table.c[c]) == 'JSONB' else _sql_type(table.c[c])}[])"
        for c in columns
    )
    select = ", ".join(f"u.{c}::jsonb" if _sql_type(table.c[c]) == "JSONB" else f"u.{c}" for c in columns)
    rest = [c for c in columns if c not in conflict]
    if update == "keep" or not rest:
        action = "DO NOTHING"
    elif update == "add":
        action = "DO UPDATE SET " + ", ".join(f"{c} = {table.name}.{c} + excluded.{c}" for c in rest)
    else:
        action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest)
    returning = " RETURNING ctid::text AS ctid, n" if update == "add" else ""
    return text(
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {select} FROM unnest({arrays}) "
        f"AS u({', '.join(columns)}) ON CONFLICT ({', '.join(conflict)}) {action}{returning}"
    )


def _columns(table: Any) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns)


_CONVERSATION_COLS = _columns(conversations)
_REVIEW_COLS = _columns(reviews)
_UPSERT_CONVERSATIONS = upsert(conversations, _CONVERSATION_COLS, ("tenant_id", "conversation_id"))
_UPSERT_REVIEWS = upsert(reviews, _REVIEW_COLS, ("tenant_id", "review_id"))
_ROLLUP_UPSERTS = {
    name: upsert(t, _columns(t), [c.name for c in t.primary_key.columns], update="add")
    for name, t in rollups.items()
}
_UPSERT_FRESHNESS = text(
    upsert(freshness, ("tenant_id", "review_time", "projected_at"), ("tenant_id",)).text.replace(
        "review_time = excluded.review_time",
        "review_time = GREATEST(freshness.review_time, excluded.review_time)",
    )
)
_LOCK = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS BIGINT[])) AS k ORDER BY k")
_LOAD_CONVERSATIONS = text(
    f"SELECT {', '.join('c.' + c for c in _CONVERSATION_COLS)} FROM conversations c "
    "JOIN unnest(CAST(:t AS TEXT[]), CAST(:c AS TEXT[])) AS k(t, c) "
    "ON c.tenant_id = k.t AND c.conversation_id = k.c"
)
_LOAD_REVIEWS = text(
    f"SELECT {', '.join('r.' + c for c in _REVIEW_COLS if c != 'ratings')}, r.ratings::text AS ratings "
    "FROM reviews r JOIN unnest(CAST(:t AS TEXT[]), CAST(:c AS TEXT[])) AS k(t, c) "
    "ON r.tenant_id = k.t AND r.conversation_id = k.c"
)


def _lock_key(key: Key) -> int:
    digest = hashlib.blake2b(f"reporting:{key[0]}:{key[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _day(*times: datetime | None) -> date:
    for t in times:
        if t is not None:
            return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC).date()
    raise ValueError("no time")


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _ratings(ratings: Iterable[Rating]) -> tuple[RatingFact, ...]:
    return tuple(RatingFact(r.category_id, r.value, r.score, tuple(r.root_causes)) for r in ratings)


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
    if isinstance(data, ConversationIngested):
        c = data.conversation
        fact = ConversationFact(
            day=_day(c.ended_at, c.started_at, data.ingested_at),
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
            conv = state.conversation = ConversationFact(day=_day(when))
        if isinstance(data, CsatRecorded):
            conv.csat = data.csat if data.csat is not None else conv.csat
            conv.nps = data.nps if data.nps is not None else conv.nps
            conv.fcr = data.fcr if data.fcr is not None else conv.fcr
        elif data.purpose is Purpose.manual:
            conv.manual_probability = data.inclusion_probability
        return True
    if isinstance(data, ReviewSubmitted):
        old = state.reviews.get(data.review_id)
        if old is not None and old.revision > 0:
            return False  # a revision already replaced it
        state.reviews[data.review_id] = ReviewFact(
            review_id=data.review_id,
            kind=data.kind.value,
            scorecard_id=data.scorecard_id,
            scorecard_version=data.scorecard_version,
            submitted_at=_utc(data.submitted_at),
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
    if isinstance(data, ReviewRevised):
        old = state.reviews.get(data.review_id)
        if old is not None and old.revision >= data.revision:
            return False
        state.reviews[data.review_id] = ReviewFact(
            review_id=data.review_id,
            kind=data.kind.value,
            scorecard_id=data.scorecard_id or (old.scorecard_id if old else ""),
            scorecard_version=data.scorecard_version or (old.scorecard_version if old else 0),
            submitted_at=old.submitted_at if old else _utc(data.revised_at),
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


async def project(session: AsyncSession, events: Sequence[Envelope]) -> set[str]:
    """Projects one batch; returns the tenants whose figures changed."""
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
        changed |= await _project_conversations(session, touched)
    if workflow:
        changed |= await _project_workflow(session, workflow)
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


async def _project_conversations(session: AsyncSession, touched: dict[Key, list[Envelope]]) -> set[str]:
    keys = sorted(touched)
    await session.execute(_LOCK, {"keys": sorted({_lock_key(k) for k in keys})})
    states = await load_states(session, keys)
    before: dict[str, facts.Contributions] = defaultdict(dict)
    after: dict[str, facts.Contributions] = defaultdict(dict)
    conv_rows: list[dict[str, Any]] = []
    review_rows: list[dict[str, Any]] = []
    newest: dict[str, datetime] = {}
    changed: set[str] = set()
    for key in keys:
        tenant = key[0]
        state = states[key]
        facts.merge(before[tenant], facts.contributions(state))
        old_reviews = dict(state.reviews)
        old_conv = None if state.conversation is None else _conv_tuple(state.conversation)
        for env in touched[key]:
            if _apply(state, env) and isinstance(env.data, ReviewSubmitted | ReviewRevised):
                t = _utc(env.time)
                if tenant not in newest or t > newest[tenant]:
                    newest[tenant] = t
        facts.merge(after[tenant], facts.contributions(state))
        if state.conversation is not None and _conv_tuple(state.conversation) != old_conv:
            conv_rows.append(_conversation_row(key, state.conversation))
            changed.add(tenant)
        for rid, r in state.reviews.items():
            if old_reviews.get(rid) is not r:
                review_rows.append(_review_row(tenant, key[1], r))
                changed.add(tenant)
    if conv_rows:
        await session.execute(_UPSERT_CONVERSATIONS, _arrays(_CONVERSATION_COLS, conv_rows))
    if review_rows:
        await session.execute(_UPSERT_REVIEWS, _arrays(_REVIEW_COLS, review_rows))
    for tenant in sorted(changed):
        await apply_difference(session, tenant, facts.difference(before[tenant], after[tenant]))
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


def _arrays(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    return {c: [r[c] for r in rows] for c in columns}


async def apply_difference(session: AsyncSession, tenant: str, diff: facts.Contributions) -> None:
    """Adds one tenant's difference to the rollups; rows whose count falls to 0 are deleted, so a rebuild
    holds exactly the rows live does."""
    for name, rows in diff.items():
        table = rollups[name]
        dims, measures = facts.ROLLUPS[name]
        ordered = sorted(rows.items())  # one lock order for every writer (each key position has one type)
        params: dict[str, list[Any]] = {"tenant_id": [tenant] * len(ordered)}
        for i, d in enumerate(dims):
            params[d] = [k[i] for k, _ in ordered]
        for j, m in enumerate(measures):
            params[m] = [round(v[j]) if is_count(m) else v[j] for _, v in ordered]
        result = await session.execute(_ROLLUP_UPSERTS[name], params)
        empty = [r.ctid for r in result if r.n == 0]
        if empty:
            await session.execute(
                # Bound as text: asyncpg encodes a tid[] parameter only from tuples, and these are strings.
                text(f"DELETE FROM {table.name} WHERE ctid = ANY(CAST(CAST(:ctids AS TEXT[]) AS TID[]))"),
                {"ctids": empty},
            )


async def _project_workflow(session: AsyncSession, events: Sequence[Envelope]) -> set[str]:
    # Later events of one entity win; keyed topics keep one entity's events in order.
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    changed: set[str] = set()
    for env in events:
        data = env.data
        tenant = env.tenant
        if isinstance(data, DisputeOpened):
            row = latest.get(("disputes", tenant, data.dispute_id)) or {}
            latest[("disputes", tenant, data.dispute_id)] = {
                "outcome": None,
                "resolved_by": None,
                "resolved_at": None,
                **row,
                "tenant_id": tenant,
                "dispute_id": data.dispute_id,
                "review_id": data.review_id,
                "conversation_id": data.conversation_id,
                "category_id": data.category_id,
                "agent_id": data.agent_id,
                "team": data.team,
                "opened_by": data.opened_by,
                "opened_at": _utc(data.opened_at),
                "day": _day(data.opened_at),
            }
        elif isinstance(data, DisputeResolved):
            row = latest.get(("disputes", tenant, data.dispute_id)) or {
                "opened_by": None,
                "opened_at": None,
                "day": _day(data.resolved_at),
            }
            latest[("disputes", tenant, data.dispute_id)] = {
                **row,
                "tenant_id": tenant,
                "dispute_id": data.dispute_id,
                "review_id": data.review_id,
                "conversation_id": data.conversation_id,
                "category_id": data.category_id,
                "agent_id": data.agent_id,
                "team": data.team,
                "outcome": data.outcome.value,
                "resolved_by": data.resolved_by,
                "resolved_at": _utc(data.resolved_at),
            }
        elif isinstance(data, AssignmentChanged):
            row = latest.get(("assignments", tenant, data.assignment_id)) or {
                "created_at": _utc(data.occurred_at),
                "day": _day(data.occurred_at),
                "inclusion_probability": None,
                "agent_id": None,
                "team": None,
                "reviewer_id": None,
            }
            latest[("assignments", tenant, data.assignment_id)] = {
                **row,
                "tenant_id": tenant,
                "assignment_id": data.assignment_id,
                "conversation_id": data.conversation_id,
                "reviewer_id": data.reviewer_id or row["reviewer_id"],
                "action": data.action.value,
                "inclusion_probability": data.inclusion_probability or row["inclusion_probability"],
                "changed_at": _utc(data.occurred_at),
            }
        elif isinstance(data, CalibrationOpened | CalibrationClosed):
            row = latest.get(("calibrations", tenant, data.session_id)) or {"opened_at": None}
            latest[("calibrations", tenant, data.session_id)] = {
                **row,
                "tenant_id": tenant,
                "session_id": data.session_id,
                "scorecard_id": data.scorecard_id,
                "scorecard_version": data.scorecard_version,
                "conversations": len(data.conversation_ids),
                "participants": len(data.participants),
                "opened_at": _utc(data.opened_at)
                if isinstance(data, CalibrationOpened)
                else row["opened_at"],
                "closed_at": _utc(data.closed_at) if isinstance(data, CalibrationClosed) else None,
                "day": _day(data.closed_at if isinstance(data, CalibrationClosed) else data.opened_at),
                "alpha": data.alpha if isinstance(data, CalibrationClosed) else None,
                "alpha_by_category": (
                    orjson.dumps(data.alpha_by_category).decode()
                    if isinstance(data, CalibrationClosed)
                    else None
                ),
                "agent_id": None,
                "team": None,
            }
        elif isinstance(data, CoachingTaskEvent):
            row = latest.get(("coaching_tasks", tenant, data.task_id)) or {
                "created_at": _utc(data.occurred_at),
                "day": _day(data.occurred_at),
            }
            latest[("coaching_tasks", tenant, data.task_id)] = {
                **row,
                "tenant_id": tenant,
                "task_id": data.task_id,
                "rule_id": data.rule_id,
                "agent_id": data.agent_id,
                "team": data.team,
                "category_id": data.category_id,
                "status": data.status.value,
                "updated_at": _utc(data.occurred_at),
            }
        elif isinstance(data, CoachingImpactMeasured):
            latest[("coaching_impacts", tenant, data.task_id)] = {
                "tenant_id": tenant,
                **data.model_dump(
                    include={
                        "task_id",
                        "rule_id",
                        "agent_id",
                        "team",
                        "category_id",
                        "n_before",
                        "n_after",
                        "mean_before",
                        "mean_after",
                        "difference",
                        "ci_low",
                        "ci_high",
                    }
                ),
                "measured_at": _utc(data.measured_at),
                "day": _day(data.measured_at),
            }
        elif isinstance(data, ScorecardPublished):
            card = data.scorecard
            latest[("scorecards", tenant, f"{card.scorecard_id}:{card.version}")] = {
                "tenant_id": tenant,
                "scorecard_id": card.scorecard_id,
                "version": card.version,
                "body": card.model_dump_json(),
            }
        else:
            continue  # RiskAlertRaised: accepted on qa.coaching, not reported on yet
        changed.add(tenant)
    by_table: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (table, _, _), row in latest.items():
        by_table[table].append(row)
    for name, rows in by_table.items():
        await _upsert_workflow(session, _WORKFLOW[name], rows)
    return changed


_WORKFLOW = {
    "disputes": disputes,
    "assignments": assignments,
    "calibrations": calibrations,
    "coaching_tasks": coaching_tasks,
    "coaching_impacts": coaching_impacts,
    "scorecards": scorecards,
}
# A later event replaces a row's columns, except those an earlier event alone knows.
_KEEP_FIRST = {
    "disputes": ("opened_by", "opened_at", "day"),
    "assignments": ("created_at", "day", "reviewer_id", "inclusion_probability"),
    "calibrations": ("opened_at",),
    "coaching_tasks": ("created_at", "day"),
}


async def _upsert_workflow(session: AsyncSession, table: Any, rows: list[dict[str, Any]]) -> None:
    cols = _columns(table)
    pk = [c.name for c in table.primary_key.columns]
    keep = _KEEP_FIRST.get(table.name, ())
    sets = ", ".join(
        f"{c} = COALESCE({table.name}.{c}, excluded.{c})" if c in keep else f"{c} = excluded.{c}"
        for c in cols
        if c not in pk
    )
    base = upsert(table, cols, pk, update="keep").text.replace("DO NOTHING", f"DO UPDATE SET {sets}")
    rows.sort(key=lambda r: tuple(r[c] for c in pk))
    await session.execute(text(base), _arrays(cols, rows))
