"""The sampler's engine state, event-sourced from its own tables so that several replicas agree.

`inputs` holds the consumed facts keyed by (topic, partition, offset) since the latest state snapshot
(`snapshot_store`, which compacts what it covers); `input_heads` the last offset per partition. Each replica
keeps every tenant's `SamplerState` in memory as a cache: before each batch it applies the inputs other
replicas committed since its cursors (tailing), then its own batch, then closes due quota slots at the global
watermark. The engine is order-independent across partitions, so every replica reaches the same decisions;
the sample log's primary key makes each decision (and its event) exist once. Any failure drops the cache and
the next batch rebuilds it from the latest snapshot and the inputs after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_sampler.decisions import Decision
from qastream_sampler.engine import (
    SamplerConfig,
    SamplerState,
    as_utc,
    close,
    conversation_time,
    observe_conversation,
    observe_csat,
    observe_review,
    observe_update,
    watermark,
)
from qastream_sampler.engine.retention import PRUNE_EVERY, horizon, past_window, prune
from qastream_sampler.plans import AutoPolicy, parse_plan
from qastream_sampler.snapshot_store import (
    SNAPSHOT_EVERY,
    Cursors,
    Mark,
    covered,
    covered_params,
    cursors_of,
    load,
)
from qastream_sampler.tables import auto_policies, input_heads, inputs, plans, snapshot_mark
from qastream_shared.db import array_insert, array_params
from qastream_shared.events import (
    EVENT_TYPES,
    ConversationIngested,
    ConversationUpdated,
    CsatRecorded,
    Envelope,
    Event,
    PartitionHeartbeat,
    ReviewSubmitted,
)
from qastream_shared.settings import Settings
from qastream_shared.topics import CONVERSATIONS, REGISTRY, REVIEWS, physical
from qastream_shared.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

_PLANS_AT = select(plans.c.created_at).order_by(plans.c.created_at.desc()).limit(1).scalar_subquery()
_POLICIES_AT = (
    select(auto_policies.c.created_at).order_by(auto_policies.c.created_at.desc()).limit(1).scalar_subquery()
)


def _heads(column: Any) -> Any:
    """One column of every partition's head as an array, in the key's order (the same in each)."""
    ordered = aggregate_order_by(column, input_heads.c.topic, input_heads.c.partition)
    return select(func.array_agg(ordered)).scalar_subquery()


_LOOK = select(
    _PLANS_AT.label("plans_at"),
    _POLICIES_AT.label("policies_at"),
    select(snapshot_mark.c.cursors).scalar_subquery().label("cursors"),
    _heads(input_heads.c.topic).label("topics"),
    _heads(input_heads.c.partition).label("partitions"),
    _heads(input_heads.c.head).label("heads"),
)


def conversation_of(data: Event) -> str:
    """The conversation an input is about ("" for a heartbeat, which is about a partition)."""
    if isinstance(data, ConversationIngested):
        return data.conversation.conversation_id
    if isinstance(data, PartitionHeartbeat):
        return ""
    assert isinstance(data, CsatRecorded | ConversationUpdated | ReviewSubmitted)
    return data.conversation_id


_INPUT_COLUMNS = (
    "topic", "partition", "offset", "tenant_id", "conversation_id", "ce_type", "body", "event_time", "agent_id",
    "team",
)  # fmt: skip
_INPUT_INSERT = array_insert(inputs, _INPUT_COLUMNS)
# Raises each partition's head to the batch's last offset: one statement text whatever the number of partitions,
# where a multi-row VALUES was compiled anew for every batch.
_HEADS_UPSERT = text(
    f"INSERT INTO {input_heads.name} (topic, partition, head)"
    " SELECT * FROM unnest(CAST(:topics AS text[]), CAST(:parts AS int[]), CAST(:heads AS bigint[]))"
    f" ON CONFLICT (topic, partition) DO UPDATE SET head = excluded.head WHERE {input_heads.name}.head < excluded.head"
)
# Where each conversation was ingested (its first stored ConversationIngested), for `resolve_retired`.
_INGESTIONS = text(
    f"SELECT DISTINCT ON (i.tenant_id, i.conversation_id) i.tenant_id, i.conversation_id, i.partition, i.offset"
    f" FROM {inputs.name} i"
    " JOIN unnest(CAST(:tenants AS text[]), CAST(:ids AS text[])) AS k(tenant_id, conversation_id)"
    f" USING (tenant_id, conversation_id) WHERE i.topic = :topic AND i.ce_type = '{ConversationIngested.TYPE}'"
    " ORDER BY i.tenant_id, i.conversation_id, i.offset"
)
# The inputs after the snapshot's cursors (`snapshot_store.covered_params`). Conversations first, so reviews
# rarely need parking; any per-partition order gives the same state.
_AFTER_SNAPSHOT = text(
    f"SELECT i.topic, i.partition, i.offset, i.tenant_id, i.ce_type, i.body FROM {inputs.name} i"
    " LEFT JOIN unnest(CAST(:topics AS text[]), CAST(:parts AS int[]), CAST(:heads AS bigint[]))"
    " AS c(topic, partition, head) USING (topic, partition)"
    ' WHERE i."offset" > coalesce(c.head, -1)'
    ' ORDER BY i.topic != :topic, i.topic, i.partition, i."offset"'
)


class SamplerStore:
    def __init__(
        self,
        settings: Settings,
        partitions: int,
        config: SamplerConfig | None = None,
        *,
        retain: bool = True,
        snapshot_every: int = SNAPSHOT_EVERY,
    ) -> None:
        self.settings = settings
        # Retention keeps a consumer's memory flat; explain's private replay keeps every conversation it read.
        self.retain = retain
        self.snapshot_every = snapshot_every
        self.config = config or SamplerConfig()
        self.partitions = partitions  # of qa.conversations: the watermark needs a high for each
        self.conversations_topic = physical(CONVERSATIONS, settings)
        self.lock = asyncio.Lock()
        self.states: dict[str, SamplerState] = {}
        self.highs: dict[int, datetime] = {}
        # qa.reviews' partitions and their highest review time: retention waits for both watermarks.
        self.reviews_topic = physical(REVIEWS, settings)
        self.review_partitions = next(t.partitions for t in REGISTRY if t.name == REVIEWS)
        self.review_highs: dict[int, datetime] = {}
        self.pruned_to: datetime | None = None
        # Conversations of the inputs being applied whose facts retention has dropped (`resolve_retired`).
        self.retired: set[tuple[str, str]] = set()
        self.cursors: dict[tuple[str, int], int] = {}
        self._plans_mark: tuple[Any, ...] | None = None
        self._plan_rows: dict[str, list[Any]] = {}
        self._policies: dict[str, AutoPolicy] = {}
        # Reviews travel on their own topic, so one can be read before its conversation (a replay reads
        # both topics at once); it waits here and is applied right after the conversation.
        # With its partition's high when it arrived, which decides whether it still counts (`past_window`).
        self.parked: dict[tuple[str, str], list[tuple[ReviewSubmitted, datetime | None]]] = {}
        self.stale = True
        self.recorded_since = 0  # inputs this replica recorded since the latest snapshot it took or read
        self.snapshot_cursors: dict[tuple[str, int], int] = {}  # of the snapshot the last rebuild read
        self.writer: int | None = None  # the pid of the child writing a snapshot (`snapshot_fork`)

    # --- state --------------------------------------------------------------------------------

    def state(self, tenant_id: str) -> SamplerState:
        st = self.states.get(tenant_id)
        if st is None:
            st = self.states[tenant_id] = SamplerState(tenant_id=tenant_id)
            self._install(st)
        return st

    def _install(self, st: SamplerState) -> None:
        for body in self._plan_rows.get(st.tenant_id, ()):
            plan = parse_plan(body)
            if (
                st.plan_versions.get((plan.plan_id, plan.version)) is None
                or st.plans.get(plan.plan_id) != plan
            ):
                st.put_plan(plan)
        st.auto_policy = self._policies.get(st.tenant_id, AutoPolicy())

    async def catch_up(self, session: AsyncSession) -> list[tuple[str, Decision]]:
        """What a batch or an idle tick does before applying anything: installs plan versions created since the
        last look, then applies what other replicas recorded since our cursors (or rebuilds, when stale).
        The newest plan and policy, the latest snapshot's cursors and every partition's head come in one
        round trip: three reads a batch cost an idle sampler hop two more."""
        if self.stale:
            return await self.rebuild(session)
        look = (await session.execute(_LOOK)).one()
        await self.refresh_plans(session, (look.plans_at, look.policies_at))
        heads = zip(look.topics or (), look.partitions or (), look.heads or (), strict=True)
        return await self.tail(session, cursors_of(look.cursors), list(heads))

    async def refresh_plans(self, session: AsyncSession, mark: tuple[Any, ...] | None = None) -> None:
        """Installs plan versions created since the last look (plans apply from the next batch on); `mark`,
        the newest plan's and policy's creation times, read here unless given."""
        if mark is None:
            mark = tuple((await session.execute(select(_PLANS_AT, _POLICIES_AT))).one())
        if mark == self._plans_mark:
            return
        rows = await session.execute(
            select(plans.c.tenant_id, plans.c.body).order_by(
                plans.c.tenant_id, plans.c.plan_id, plans.c.version
            )
        )
        self._plan_rows = {}
        for tenant, body in rows:
            self._plan_rows.setdefault(tenant, []).append(body)
        pol = await session.execute(
            select(auto_policies.c.tenant_id, auto_policies.c.body).order_by(
                auto_policies.c.tenant_id, auto_policies.c.version
            )
        )
        self._policies = {tenant: AutoPolicy.model_validate(body) for tenant, body in pol}
        for st in self.states.values():
            self._install(st)
        self._plans_mark = mark

    def apply(self, topic: str, partition: int, data: Event, tenant: str) -> list[tuple[str, Decision]]:
        if isinstance(data, PartitionHeartbeat):
            # As a conversation of that time would: raises this partition's high, so the watermark moves.
            if topic == self.conversations_topic:
                high = self.highs.get(partition)
                beat = as_utc(data.event_time_high)
                if high is None or beat > high:
                    self.highs[partition] = beat
            return []
        st = self.state(tenant)
        if isinstance(data, ConversationIngested):
            decisions = []
            if topic == self.conversations_topic:
                high = self.highs.get(partition)
                decisions = observe_conversation(st, data, partition_high=high, config=self.config)
                t = conversation_time(data.conversation, data.ingested_at)
                if high is None or t > high:
                    self.highs[partition] = t
                for review, review_high in self.parked.pop((tenant, data.conversation.conversation_id), ()):
                    decisions += self._review(st, review, review_high)
        elif isinstance(data, CsatRecorded | ConversationUpdated):
            facts = st.conversations.get(data.conversation_id)
            if facts is None and (tenant, data.conversation_id) in self.retired:
                return []
            if facts is not None and past_window(facts, self.highs.get(partition), self.config):
                return []
            if isinstance(data, CsatRecorded):
                decisions = observe_csat(st, data, config=self.config)
            else:
                decisions = observe_update(st, data, config=self.config)
        elif isinstance(data, ReviewSubmitted):
            review_high = self.review_highs.get(partition) if topic == self.reviews_topic else None
            if topic == self.reviews_topic:
                t = as_utc(data.submitted_at)
                if review_high is None or t > review_high:
                    self.review_highs[partition] = t
            if data.conversation_id not in st.conversations:
                if (tenant, data.conversation_id) not in self.retired:
                    self.parked.setdefault((tenant, data.conversation_id), []).append((data, review_high))
                return []
            decisions = self._review(st, data, review_high)
        else:
            decisions = []
        return [(tenant, d) for d in decisions]

    def _review(self, st: SamplerState, review: ReviewSubmitted, high: datetime | None) -> list[Decision]:
        facts = st.conversations[review.conversation_id]
        if past_window(facts, high, self.config):
            return []
        return observe_review(st, review, config=self.config)

    def close_due(self) -> list[tuple[str, Decision]]:
        w = watermark(self.highs, self.partitions)
        if w is None:
            return []
        decisions = [
            (tenant, d)
            for tenant, st in sorted(self.states.items())
            for d in close(st, w, config=self.config)
        ]
        self._retain(w)
        return decisions

    def _retain(self, w: datetime) -> None:
        """Drops what no input still to come can need (`engine.retention`), once per hour of event time."""
        h = horizon(w, watermark(self.review_highs, self.review_partitions), self.config)
        if not self.retain or h is None or (self.pruned_to is not None and h < self.pruned_to + PRUNE_EVERY):
            return
        dropped = sum(prune(st, h) for st in self.states.values())
        self.pruned_to = h
        log.debug("sampler retention: %d conversations older than %s dropped", dropped, h)

    async def resolve_retired(self, session: AsyncSession, keys: set[tuple[str, str]]) -> None:
        """Which of these conversations, unknown in memory, this store has applied and then dropped: their
        ingestion is stored at an offset its cursor has passed. The others are yet to come (or never were)."""
        self.retired = set()
        if not keys:
            return
        tenants, ids = zip(*sorted(keys), strict=True)
        rows = await session.execute(
            _INGESTIONS, {"tenants": list(tenants), "ids": list(ids), "topic": self.conversations_topic}
        )
        self.retired = {
            (tenant, cid)
            for tenant, cid, partition, offset in rows
            if offset <= self.cursors.get((self.conversations_topic, partition), -1)
        }

    def snapshot_due(self) -> bool:
        """Enough inputs since the latest snapshot, and no snapshot still being written."""
        return self.retain and self.recorded_since >= self.snapshot_every and self.writer is None

    def unknown(self, tenant: str, data: Event) -> bool:
        """Feedback or a review about a conversation that is not in memory."""
        return isinstance(data, CsatRecorded | ConversationUpdated | ReviewSubmitted) and not self.knows(
            tenant, data.conversation_id
        )

    def knows(self, tenant: str, conversation_id: str) -> bool:
        st = self.states.get(tenant)
        return st is not None and conversation_id in st.conversations

    # --- persistence --------------------------------------------------------------------------

    async def rebuild(self, session: AsyncSession) -> list[tuple[str, Decision]]:
        """Loads the latest snapshot, then replays the inputs after it, partition by partition in offset
        order. Again if a snapshot committed meanwhile: its compaction may have taken inputs from under the
        read (each statement sees the latest commits)."""
        while True:
            decisions = await self._rebuild(session)
            if await covered(session) == self.snapshot_cursors:
                return decisions
            log.info("sampler snapshot written during a rebuild: rebuilding from it")

    async def _rebuild(self, session: AsyncSession) -> list[tuple[str, Decision]]:
        self._plans_mark = None
        mark, states = await load(session)
        self.snapshot_cursors = dict(mark.cursors)
        self.restore(mark, states)
        await self.refresh_plans(session)
        decisions: list[tuple[str, Decision]] = []
        result = await session.stream(
            _AFTER_SNAPSHOT.execution_options(yield_per=2000),
            {**covered_params(mark.cursors), "topic": self.conversations_topic},
        )
        n = 0
        async for topic, partition, offset, tenant, ce_type, body in result:
            decisions += self.apply(topic, partition, EVENT_TYPES[ce_type].model_validate_json(body), tenant)
            self.cursors[(topic, partition)] = offset
            n += 1
        decisions += self.close_due()
        self.stale = False
        log.info("sampler state rebuilt from the snapshot of %d tenants and %d inputs", len(self.states), n)
        return decisions

    def restore(self, mark: Mark, states: dict[str, SamplerState]) -> None:
        """Takes the state of a snapshot (empty: the state before any input)."""
        self.states, self.retired, self.recorded_since = states, set(), 0
        self.highs, self.review_highs, self.pruned_to = mark.highs, mark.review_highs, mark.pruned_to
        self.cursors, self.parked = dict(mark.cursors), mark.parked
        for st in self.states.values():
            self._install(st)

    async def tail(
        self, session: AsyncSession, latest: Cursors, heads: list[tuple[str, int, int]]
    ) -> list[tuple[str, Decision]]:
        """Applies what other replicas committed since our cursors, given the latest snapshot's cursors and
        every partition's head; rebuilds if that snapshot has compacted inputs past them."""
        if self._overtaken(latest):
            return await self.rebuild(session)
        behind = [
            (t, p, self.cursors.get((t, p), -1))
            for t, p, head in heads
            if head > self.cursors.get((t, p), -1)
        ]
        if not behind:
            return []
        before = dict(self.cursors)
        decisions: list[tuple[str, Decision]] = []
        for topic, partition, cursor in behind:
            rows = await session.execute(
                select(inputs.c.offset, inputs.c.tenant_id, inputs.c.ce_type, inputs.c.body)
                .where(inputs.c.topic == topic, inputs.c.partition == partition, inputs.c.offset > cursor)
                .order_by(inputs.c.offset)
            )
            parsed = [(o, tenant, EVENT_TYPES[t].model_validate_json(b)) for o, tenant, t, b in rows]
            await self.resolve_retired(
                session,
                {(tenant, conversation_of(e)) for _, tenant, e in parsed if self.unknown(tenant, e)},
            )
            for offset, tenant, data in parsed:
                decisions += self.apply(topic, partition, data, tenant)
                self.cursors[(topic, partition)] = offset
        self.retired = set()
        if self._overtaken(await covered(session), before):
            # Another replica's snapshot committed during the read and compacted inputs we had not read.
            return await self.rebuild(session)
        return decisions

    def _overtaken(
        self, latest: dict[tuple[str, int], int], cursors: dict[tuple[str, int], int] | None = None
    ) -> bool:
        """A snapshot covers inputs past these cursors: what it compacted can no longer be tailed."""
        own = self.cursors if cursors is None else cursors
        return any(own.get(k, -1) < head for k, head in latest.items())

    async def record(self, uow: UnitOfWork, events: Iterable[Envelope]) -> None:
        rows = []
        heads: dict[tuple[str, int], int] = {}
        for env in events:
            assert env.origin is not None
            topic, partition, offset = env.origin
            conv = env.data if isinstance(env.data, ConversationIngested) else None
            beat = env.data if isinstance(env.data, PartitionHeartbeat) else None
            rows.append(
                {
                    "topic": topic,
                    "partition": partition,
                    "offset": offset,
                    "tenant_id": env.tenant,
                    "conversation_id": conversation_of(env.data),
                    "ce_type": env.type,
                    "body": env.value(),
                    "event_time": conversation_time(conv.conversation, conv.ingested_at)
                    if conv
                    else beat.event_time_high
                    if beat
                    else None,
                    "agent_id": conv.conversation.agent_id if conv else None,
                    "team": conv.conversation.team if conv else None,
                }
            )
            heads[(topic, partition)] = max(offset, heads.get((topic, partition), -1))
            self.cursors[(topic, partition)] = max(offset, self.cursors.get((topic, partition), -1))
        if not rows:
            return
        self.recorded_since += len(rows)
        await uow.session.execute(_INPUT_INSERT, array_params(_INPUT_COLUMNS, rows))
        await uow.session.execute(_HEADS_UPSERT, covered_params(heads))
