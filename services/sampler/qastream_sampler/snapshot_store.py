"""State snapshots, and the compaction of the inputs they cover, so that `inputs` stays flat and a rebuild
reads the snapshot and the inputs after it instead of all of history.

A snapshot is taken in a consumer's batch transaction, after the batch is applied and the due slots closed:
each tenant's engine state, written chunk by chunk as `engine.snapshot` encodes it (so the writer never holds
the state twice over), the store's own state (partition highs, parked reviews,
retention's horizon) and the input offsets it covers (the store's cursors). In the same transaction the
inputs it covers are compacted: feedback, reviews and heartbeats go (their effect is in the state), and a
conversation's ingestion keeps its row, with its body, while the conversation is in memory (a close or late
feedback can still decide it, and publishing carries its body), and as a body-less stub once retention has
dropped it (`resolve_retired` tells a retired conversation from one never ingested by that row).

Replicas: snapshots are serialised by an advisory lock, and one is written only if it covers at least what
the latest covers, so compaction never drops an input a newer snapshot does not hold. A replica whose cursors
are behind the latest snapshot's (its tail would miss compacted inputs) rebuilds from the snapshot instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_sampler.engine import SamplerState
from qastream_sampler.engine import snapshot as codec
from qastream_sampler.tables import inputs, snapshot_chunks, snapshot_mark
from qastream_shared.events import ConversationIngested, ReviewSubmitted

if TYPE_CHECKING:
    from qastream_sampler.store import SamplerStore

# Inputs one replica records between two snapshots: bounds the tail a rebuild (or explain) reads.
SNAPSHOT_EVERY = 20_000

Cursors = dict[tuple[str, int], int]
Parked = dict[tuple[str, str], list[tuple[ReviewSubmitted, datetime | None]]]
_COVERED = "unnest(CAST(:topics AS text[]), CAST(:parts AS int[]), CAST(:heads AS bigint[])) AS c(topic, partition, head)"
_DROP_COVERED = text(
    f"WITH dropped AS (DELETE FROM {inputs.name} i USING {_COVERED}"
    ' WHERE i.topic = c.topic AND i.partition = c.partition AND i."offset" <= c.head'
    f" AND i.ce_type <> '{ConversationIngested.TYPE}' RETURNING 1) SELECT count(*) FROM dropped"
)
# Ingestions of conversations retention dropped (older than its horizon, and not held open) become stubs.
_STUB_RETIRED = text(
    f"UPDATE {inputs.name} i SET body = ''::bytea FROM {_COVERED}"
    ' WHERE i.topic = c.topic AND i.partition = c.partition AND i."offset" <= c.head'
    f" AND i.ce_type = '{ConversationIngested.TYPE}' AND i.event_time < :before AND octet_length(i.body) > 0"
    " AND NOT EXISTS (SELECT 1 FROM unnest(CAST(:held_tenants AS text[]), CAST(:held_ids AS text[]))"
    " AS h(tenant_id, conversation_id) WHERE h.tenant_id = i.tenant_id AND h.conversation_id = i.conversation_id)"
)
_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('sampler-snapshot:' || current_schema()))")


def covered_params(cursors: Cursors) -> dict[str, list[Any]]:
    """The cursors as the three arrays `_COVERED` (and the rebuild's and explain's queries) unnest."""
    keys = sorted(cursors)
    return {
        "topics": [t for t, _ in keys],
        "parts": [p for _, p in keys],
        "heads": [cursors[k] for k in keys],
    }


@dataclass
class Mark:
    """The store's own state at the snapshot, beside the tenants' engine states."""

    cursors: Cursors
    highs: dict[int, datetime]
    review_highs: dict[int, datetime]
    pruned_to: datetime | None
    parked: Parked


def cursors_of(stored: list[list[Any]] | None) -> Cursors:
    """snapshot_mark.cursors as stored ([[topic, partition, offset], ...], or none) → Cursors."""
    return {(t, p): o for t, p, o in stored or ()}


async def covered(session: AsyncSession) -> Cursors:
    """The input offsets the latest snapshot covers (empty if there is none)."""
    return cursors_of((await session.execute(select(snapshot_mark.c.cursors))).scalar_one_or_none())


async def recorded(session: AsyncSession) -> int:
    """How many inputs the sampler has recorded so far: those stored, and those compacted away."""
    stored = (await session.execute(select(func.count()).select_from(inputs))).scalar_one()
    compacted = (await session.execute(select(snapshot_mark.c.compacted))).scalar_one_or_none()
    return int(stored) + int(compacted or 0)


async def load(session: AsyncSession, tenant_id: str | None = None) -> tuple[Mark, dict[str, SamplerState]]:
    """The latest snapshot: the mark and every tenant's state (or only `tenant_id`'s). Empty if none."""
    row = (
        await session.execute(select(snapshot_mark.c.format, snapshot_mark.c.cursors, snapshot_mark.c.body))
    ).one_or_none()
    if row is None:
        return Mark({}, {}, {}, None, {}), {}
    if row.format != codec.FORMAT:
        raise codec.SnapshotFormatError(
            f"sampler snapshot of format {row.format}, this code reads format {codec.FORMAT}"
        )
    mark = mark_of(row.cursors, row.body)
    q = select(snapshot_chunks.c.tenant_id, snapshot_chunks.c.part, snapshot_chunks.c.body).order_by(
        snapshot_chunks.c.tenant_id, snapshot_chunks.c.seq
    )
    if tenant_id is not None:
        q = q.where(snapshot_chunks.c.tenant_id == tenant_id)
    states: dict[str, SamplerState] = {}
    async for tenant, part, body in await session.stream(q.execution_options(yield_per=16)):
        st = states.get(tenant)
        if st is None:
            st = states[tenant] = SamplerState(tenant_id=tenant)
        codec.add(st, part, body)
    return mark, states


def mark_of_store(store: SamplerStore) -> Mark:
    return Mark(dict(store.cursors), store.highs, store.review_highs, store.pruned_to, store.parked)


def mark_body(mark: Mark) -> bytes:
    """The store's own state, as JSON (its cursors have their own column)."""
    return orjson.dumps(
        {
            "highs": sorted(mark.highs.items()),
            "review_highs": sorted(mark.review_highs.items()),
            "pruned_to": mark.pruned_to,
            "parked": [
                [tenant, cid, [[review.model_dump_json(), high] for review, high in waiting]]
                for (tenant, cid), waiting in mark.parked.items()
            ],
        }
    )


def mark_of(cursors: list[list[Any]], body: bytes) -> Mark:
    try:
        own = orjson.loads(body)
        return Mark(
            cursors_of(cursors),
            {p: datetime.fromisoformat(t) for p, t in own["highs"]},
            {p: datetime.fromisoformat(t) for p, t in own["review_highs"]},
            codec.when(own["pruned_to"]),
            {
                (tenant, cid): [
                    (ReviewSubmitted.model_validate_json(review), codec.when(high))
                    for review, high in waiting
                ]
                for tenant, cid, waiting in own["parked"]
            },
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise codec.SnapshotFormatError(f"sampler snapshot mark unreadable: {exc!r}") from exc


async def write_chunks(session: AsyncSession, tenant: str, state: SamplerState) -> None:
    """One tenant's state, each chunk inserted as soon as it is encoded."""
    for seq, (part, body) in enumerate(codec.chunks(state)):
        await session.execute(
            snapshot_chunks.insert(), {"tenant_id": tenant, "seq": seq, "part": part, "body": body}
        )


async def save(session: AsyncSession, store: SamplerStore) -> bool:
    """Writes the store's state as the latest snapshot and compacts the inputs it covers. False (nothing
    written) when another replica's snapshot already covers more on some partition."""
    await session.execute(_LOCK)
    latest = await covered(session)
    if any(store.cursors.get(k, -1) < head for k, head in latest.items()):
        return False
    await session.execute(delete(snapshot_chunks))
    for tenant, st in sorted(store.states.items()):
        await write_chunks(session, tenant, st)
    params = covered_params(store.cursors)
    dropped = int((await session.execute(_DROP_COVERED, params)).scalar_one())
    cursors = [[t, p, o] for (t, p), o in sorted(store.cursors.items())]
    body = mark_body(mark_of_store(store))
    stmt = pg_insert(snapshot_mark).values(
        id=1, format=codec.FORMAT, cursors=cursors, body=body, compacted=dropped
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[snapshot_mark.c.id],
            set_={
                "format": codec.FORMAT,
                "cursors": cursors,
                "body": body,
                "compacted": snapshot_mark.c.compacted + dropped,
                "taken_at": text("now()"),
            },
        )
    )
    if store.pruned_to is not None:
        held = sorted(
            (tenant, cid)
            for tenant, st in store.states.items()
            for cid, facts in st.conversations.items()
            if facts.event_time < store.pruned_to
        )
        await session.execute(
            _STUB_RETIRED,
            {
                **params,
                "before": store.pruned_to,
                "held_tenants": [t for t, _ in held],
                "held_ids": [c for _, c in held],
            },
        )
    return True
