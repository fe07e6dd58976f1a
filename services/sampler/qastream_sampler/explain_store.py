"""The state `explain` reads: one tenant's engine state, from the latest snapshot and the stored inputs after
it, replayed into a private store.

Read-only and never shared with the consumer: it touches no replica's cache and publishes nothing. It starts
from the tenant's state in the latest snapshot (`snapshot_store`; empty if there is none), and replays only
the inputs after the snapshot that can bear on the asked conversation: the tenant's conversations whose event
time falls in one of the periods around it (the pools it can share), and the feedback and reviews of those
and of its pool mates in the snapshot. What they need from the rest of the stream comes from SQL over
`inputs.event_time`, taken together with the snapshot: each one's partition high at its offset (so `on_time`
is what the consumer computed), each agent's first on-time conversation, and the current watermark. The
engine does the rest, so the verdicts are the consumer's, not a re-implementation. A conversation retention
has dropped from the snapshot is past explaining (its decisions stay in the sample log).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_sampler import snapshot_store
from qastream_sampler.engine import (
    SamplerConfig,
    SamplerState,
    UnknownConversation,
    period_bounds,
)
from qastream_sampler.plan_store import all_plan_versions, current_auto_policy
from qastream_sampler.plans import AnyPlan, Period, StratifiedPlan, TargetedPlan
from qastream_sampler.snapshot_store import Cursors, covered, covered_params
from qastream_sampler.store import SamplerStore
from qastream_sampler.tables import inputs
from qastream_shared.events import EVENT_TYPES, ConversationIngested, PartitionHeartbeat
from qastream_shared.settings import Settings
from qastream_shared.topics import CONVERSATIONS, REGISTRY, physical

# The inputs that raise a partition's high: conversations and ingest's heartbeats (tenant PLATFORM_TENANT, so
# the tenant filters below keep them out of every result row).
_RAISING = f"'{ConversationIngested.TYPE}', '{PartitionHeartbeat.TYPE}'"
# Every stored conversation of the topic with the highest event time seen before it on its partition (the
# consumer's `partition_high`) and whether it is the conversation's first ingestion (later ones are no-ops).
# Only inputs after the snapshot: what it covers is in its state (and may be compacted away).
_AFTER = (
    " LEFT JOIN unnest(CAST(:topics AS text[]), CAST(:parts AS int[]), CAST(:heads AS bigint[]))"
    ' AS c(topic, partition, head) USING (topic, partition) WHERE i."offset" > coalesce(c.head, -1)'
)
_RANKED = f"""
    SELECT tenant_id, conversation_id, partition, "offset", event_time, agent_id, team,
           max(event_time) OVER (PARTITION BY partition ORDER BY "offset"
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS high,
           row_number() OVER (PARTITION BY tenant_id, conversation_id ORDER BY partition, "offset") AS nth
    FROM {inputs.name} i {_AFTER} AND topic = :topic AND ce_type IN ({_RAISING})
"""
_INPUTS_OF = text(
    f"SELECT i.topic, i.partition, i.offset, i.ce_type, i.body FROM {inputs.name} i"
    " JOIN unnest(CAST(:ids AS text[])) AS k(conversation_id) USING (conversation_id)"
    # Conversations first, so reviews rarely wait; each partition in offset order, as a rebuild does.
    f" {_AFTER} AND i.tenant_id = :tenant ORDER BY i.topic != :topic, i.topic, i.partition, i.offset"
)
_FIRST_SEEN = text(
    f"SELECT agent_id, min(event_time) FROM ({_RANKED}) r WHERE tenant_id = :tenant AND nth = 1"
    " AND agent_id = ANY(CAST(:agents AS text[])) AND (high IS NULL OR event_time + :grace >= high)"
    " GROUP BY agent_id"
)
_HIGHS = text(
    f"SELECT partition, max(event_time) FROM {inputs.name} i {_AFTER}"
    f" AND topic = :topic AND ce_type IN ({_RAISING}) GROUP BY partition"
)


class PastRetention(UnknownConversation):
    """Seen, but retention has dropped it from the state a snapshot holds: it can no longer be explained."""


async def explain_state(
    session: AsyncSession,
    settings: Settings,
    tenant_id: str,
    conversation_id: str,
    *,
    partitions: int | None = None,
    config: SamplerConfig | None = None,
) -> SamplerState:
    """The tenant's state as far as it concerns `conversation_id`, closed at the current watermark. Read
    again if a snapshot committed meanwhile, as a rebuild is: its compaction may have taken inputs after the
    snapshot this read started from (each statement sees the latest commits; a GET reads in autocommit)."""
    while True:
        state, cursors = await _explain_state(
            session, settings, tenant_id, conversation_id, partitions, config
        )
        if await covered(session) == cursors:
            return state


async def _explain_state(
    session: AsyncSession,
    settings: Settings,
    tenant_id: str,
    conversation_id: str,
    partitions: int | None,
    config: SamplerConfig | None,
) -> tuple[SamplerState, Cursors]:
    config = config or SamplerConfig()
    # The watermark needs a high from every partition of qa.conversations: the registry's count, as at start.
    partitions = partitions or next(t.partitions for t in REGISTRY if t.name == CONVERSATIONS)
    topic = physical(CONVERSATIONS, settings)
    own = (
        await session.execute(
            select(inputs.c.event_time, inputs.c.agent_id, inputs.c.team, inputs.c.partition, inputs.c.offset)
            .where(
                inputs.c.tenant_id == tenant_id,
                inputs.c.conversation_id == conversation_id,
                inputs.c.topic == topic,
                inputs.c.ce_type == ConversationIngested.TYPE,
            )
            .order_by(inputs.c.offset)
            .limit(1)
        )
    ).one_or_none()
    if own is None:
        raise UnknownConversation(f"conversation {conversation_id!r} unknown to the sampler of {tenant_id!r}")
    mark, snapped = await snapshot_store.load(session, tenant_id)
    state = snapped.get(tenant_id) or SamplerState(tenant_id=tenant_id)
    t, agent, team, own_partition, own_offset = own
    # Safe before explain_state's re-read check: the mark is read before the chunks, so a snapshot committing
    # between them gives chunks at least as new as the mark, and retention only moves forward.
    if (
        own_offset <= mark.cursors.get((topic, own_partition), -1)
        and conversation_id not in state.conversations
    ):
        raise PastRetention(
            f"conversation {conversation_id!r} is older than the sampler's retention window: its decisions,"
            " if any, are in the sample log (GET /v1/samples?conversation_id=...)"
        )
    after = covered_params(mark.cursors)

    versions = await all_plan_versions(session, tenant_id)
    for plan in versions:
        state.put_plan(plan)
    state.auto_policy = await current_auto_policy(session, tenant_id)
    query, params = _pool_mates(topic, tenant_id, conversation_id, (t, agent, team), versions)
    window = (await session.execute(query, {**params, **after})).all()
    high_at = {(partition, offset): high for _, partition, offset, high, _ in window}
    # Its pool mates in the snapshot, whose feedback and reviews after it can still change their facts.
    snapped_mates = {
        c for pool in state.pools.values() if conversation_id in pool.candidates for c in pool.candidates
    }
    ids = sorted({cid for cid, *_ in window} | snapped_mates | {conversation_id})
    rows = (
        await session.execute(_INPUTS_OF, {"ids": ids, "tenant": tenant_id, "topic": topic, **after})
    ).all()
    agents = sorted({agent for *_, agent in window if agent is not None})
    if agents:
        first = await session.execute(
            _FIRST_SEEN,
            {"topic": topic, "tenant": tenant_id, "agents": agents, "grace": config.grace, **after},
        )
        for seen_agent, seen in first:
            before = state.agent_first_seen.get(seen_agent)
            state.agent_first_seen[seen_agent] = seen if before is None else min(before, seen)

    store = SamplerStore(settings, partitions, config, retain=False)  # private: only this call sees it
    store.states[tenant_id] = state
    store.review_highs = dict(mark.review_highs)
    store.parked = {key: waiting for key, waiting in mark.parked.items() if key[0] == tenant_id}
    for row_topic, partition, offset, ce_type, body in rows:
        if row_topic == topic and ce_type == ConversationIngested.TYPE:
            high = _later(high_at.get((partition, offset)), mark.highs.get(partition))
            if high is None:
                store.highs.pop(partition, None)
            else:
                store.highs[partition] = high
        store.apply(row_topic, partition, EVENT_TYPES[ce_type].model_validate_json(body), tenant_id)
    tail_highs: dict[int, datetime] = {
        p: high for p, high in await session.execute(_HIGHS, {"topic": topic, **after})
    }
    store.highs = {
        p: high
        for p in mark.highs.keys() | tail_highs.keys()
        if (high := _later(tail_highs.get(p), mark.highs.get(p))) is not None
    }
    store.close_due()
    return state, mark.cursors


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _pool_mates(
    topic: str,
    tenant_id: str,
    conversation_id: str,
    own: tuple[datetime, str | None, str | None],
    versions: list[AnyPlan],
) -> tuple[TextClause, dict[str, Any]]:
    """The query for the conversations that can share a pool with this one (and this one): for each plan
    with pools, those of the same stratum (agent, team or the whole tenant) in the same period."""
    t, agent, team = own
    params: dict[str, Any] = {"topic": topic, "tenant": tenant_id, "cid": conversation_id}
    clauses = ["conversation_id = :cid"]
    pools = {pool for p in versions if (pool := _pool_of(p)) is not None}
    for i, (by, period) in enumerate(sorted(pools)):
        lo, hi, _ = period_bounds(t, period)
        params |= {f"lo{i}": lo, f"hi{i}": hi}
        same = {"agent": ("agent_id", agent), "team": ("team", team)}.get(by)
        if same is not None:
            if same[1] is None:
                continue  # not in any stratum of this kind: no pool to share
            params[f"s{i}"] = same[1]
        clause = f"event_time >= :lo{i} AND event_time < :hi{i}"
        clauses.append(f"({clause} AND {same[0]} = :s{i})" if same else f"({clause})")
    sql = (
        f'SELECT conversation_id, partition, "offset", high, agent_id FROM ({_RANKED}) r'
        f" WHERE tenant_id = :tenant AND ({' OR '.join(clauses)})"
    )
    return text(sql), params


def _pool_of(plan: AnyPlan) -> tuple[str, Period] | None:
    """(stratum kind, period) of the pools a plan keeps, if any."""
    if isinstance(plan, StratifiedPlan):
        return plan.by.value, plan.period
    if isinstance(plan, TargetedPlan) and plan.fallback is not None:
        return plan.fallback.per.value, plan.fallback.period
    return None
