"""One tenant's engine state as a sequence of small JSON chunks and back, for the store's snapshots
(`snapshot_store`).

In chunks so that writing a snapshot never holds the whole state twice: each chunk is encoded when the
writer asks for it and dropped once written, so the writer's peak memory is one chunk, not the state's size
(a single block pickled and then copied for the INSERT stayed in the process's RSS as a step per snapshot).

Each chunk is one part of the state (`conversations`, `log`, `pools`, ...) as `{"fields": [...], "rows":
[[...], ...]}`: the rows are positional and the field names travel with them, so a field added with a
default reads older snapshots unchanged. Rows keep the dicts' insertion order, which the engine's iteration
follows. Plans and the auto policy are left out: they live in their own tables and are installed on load,
as on a rebuild. `FORMAT` names the layout: a change that an older reader would misread (a field renamed,
removed or given another meaning) bumps it, and a snapshot of another format is refused rather than misread
(`SnapshotFormatError`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import orjson

from qastream_sampler.decisions import Decision
from qastream_sampler.engine.state import (
    Candidate,
    ConversationFacts,
    Pending,
    Pool,
    PoolKey,
    SamplerState,
)
from qastream_shared.events import Purpose

FORMAT = 2
CHUNK_ROWS = 2000  # rows per chunk (a pool counts one per candidate): a few hundred kB of JSON

Row = list[Any]


class SnapshotFormatError(RuntimeError):
    """A stored snapshot written in a layout this code does not read."""


def when(v: str | None) -> datetime | None:
    return None if v is None else datetime.fromisoformat(v)


# --- rows ------------------------------------------------------------------------------------------------

FACT_FIELDS = [
    "conversation_id", "event_time", "channel", "agent_id", "team", "tags", "handle_seconds", "on_time",
    "csat", "nps", "escalated", "reopened", "auto_score", "auto_failed", "sentiment", "p_dissatisfied",
]  # fmt: skip


def fact_row(f: ConversationFacts) -> Row:
    return [
        f.conversation_id, f.event_time, f.channel, f.agent_id, f.team, sorted(f.tags), f.handle_seconds,
        f.on_time, f.csat, f.nps, f.escalated, f.reopened, f.auto_score, f.auto_failed, f.sentiment,
        f.p_dissatisfied,
    ]  # fmt: skip


def fact_of(r: dict[str, Any]) -> ConversationFacts:
    return ConversationFacts(**{**r, "event_time": when(r["event_time"]), "tags": frozenset(r["tags"])})


DECISION_FIELDS = [
    "conversation_id", "purpose", "plan_id", "plan_version", "priority", "stratum", "rule",
    "inclusion_probability", "reason", "decided_at",
]  # fmt: skip


def decision_row(d: Decision) -> Row:
    return [
        d.conversation_id, d.purpose.value, d.plan_id, d.plan_version, d.priority, d.stratum, d.rule,
        d.inclusion_probability, d.reason, d.decided_at,
    ]  # fmt: skip


def decision_of(r: dict[str, Any]) -> Decision:
    return Decision(**{**r, "purpose": Purpose(r["purpose"]), "decided_at": when(r["decided_at"])})


def key_row(k: PoolKey) -> Row:
    return [k.plan_id, k.plan_version, k.stratum, k.period_start]


def key_of(r: Row) -> PoolKey:
    return PoolKey(r[0], r[1], r[2], datetime.fromisoformat(r[3]))


POOL_FIELDS = [
    "key", "kind", "period_label", "period_end", "slots", "target", "closed_slots", "slot_picks", "candidates"
]  # fmt: skip
CANDIDATE_FIELDS = ["conversation_id", "u", "slot", "matched", "picked"]


def pool_row(k: PoolKey, p: Pool) -> Row:
    return [
        key_row(k), p.kind, p.period_label, p.period_end, p.slots, p.target, p.closed_slots, p.slot_picks,
        [[c.conversation_id, c.u, c.slot, c.matched, c.picked] for c in p.candidates.values()],
    ]  # fmt: skip


def pool_of(r: dict[str, Any]) -> tuple[PoolKey, Pool]:
    fields = {k: v for k, v in r.items() if k != "key"}
    candidates = (Candidate(*c) for c in r["candidates"])
    return key_of(r["key"]), Pool(
        **{
            **fields,
            "period_end": when(r["period_end"]),
            "candidates": {c.conversation_id: c for c in candidates},
        }
    )


PENDING_FIELDS = ["conversation_id", "plan_id", "plan_version", "new_agent_due", "pool", "parked"]


def pending_row(k: tuple[str, str], p: Pending) -> Row:
    return [
        k[0], k[1], p.plan_version, p.new_agent_due, None if p.pool is None else key_row(p.pool),
        None if p.parked is None else decision_row(p.parked),
    ]  # fmt: skip


def pending_of(r: dict[str, Any]) -> tuple[tuple[str, str], Pending]:
    parked = r["parked"]
    return (r["conversation_id"], r["plan_id"]), Pending(
        plan_version=r["plan_version"],
        new_agent_due=when(r["new_agent_due"]),
        pool=None if r["pool"] is None else key_of(r["pool"]),
        parked=None if parked is None else decision_of(dict(zip(DECISION_FIELDS, parked, strict=True))),
    )


# --- chunks ----------------------------------------------------------------------------------------------


def chunks(state: SamplerState) -> Iterator[tuple[str, bytes]]:
    """The state as (part, JSON) chunks, each encoded only when asked for."""
    yield "tenant", _doc(["closed_to"], [[state.closed_to]])
    yield from _chunked(
        "conversations", FACT_FIELDS, ((1, fact_row(f)) for f in state.conversations.values())
    )
    yield from _chunked("log", DECISION_FIELDS, ((1, decision_row(d)) for d in state.log.values()))
    yield from _chunked(
        "pools", POOL_FIELDS, ((1 + len(p.candidates), pool_row(k, p)) for k, p in state.pools.items())
    )
    yield from _chunked("pending", PENDING_FIELDS, ((1, pending_row(k, p)) for k, p in state.pending.items()))
    yield from _chunked(
        "agent_first_seen",
        ["agent_id", "first_seen"],
        ((1, [a, t]) for a, t in state.agent_first_seen.items()),
    )


def _doc(fields: list[str], rows: list[Row]) -> bytes:
    return orjson.dumps({"fields": fields, "rows": rows})


def _chunked(part: str, fields: list[str], rows: Iterable[tuple[int, Row]]) -> Iterator[tuple[str, bytes]]:
    batch: list[Row] = []
    weight = 0
    for w, row in rows:
        batch.append(row)
        weight += w
        if weight >= CHUNK_ROWS:
            yield part, _doc(fields, batch)
            batch, weight = [], 0
    if batch:
        yield part, _doc(fields, batch)


def _closed_to(st: SamplerState, r: dict[str, Any]) -> None:
    st.closed_to = when(r["closed_to"])


def _conversation(st: SamplerState, r: dict[str, Any]) -> None:
    f = fact_of(r)
    st.conversations[f.conversation_id] = f


def _decision(st: SamplerState, r: dict[str, Any]) -> None:
    d = decision_of(r)
    st.log[d.key] = d


def _pool(st: SamplerState, r: dict[str, Any]) -> None:
    k, p = pool_of(r)
    st.pools[k] = p


def _pending(st: SamplerState, r: dict[str, Any]) -> None:
    k, p = pending_of(r)
    st.pending[k] = p


def _first_seen(st: SamplerState, r: dict[str, Any]) -> None:
    st.agent_first_seen[r["agent_id"]] = datetime.fromisoformat(r["first_seen"])


_READERS: dict[str, Callable[[SamplerState, dict[str, Any]], None]] = {
    "tenant": _closed_to,
    "conversations": _conversation,
    "log": _decision,
    "pools": _pool,
    "pending": _pending,
    "agent_first_seen": _first_seen,
}


def add(state: SamplerState, part: str, body: bytes) -> None:
    """Reads one chunk into `state` (chunks in the order `chunks` gave them)."""
    try:
        read = _READERS[part]
        doc = orjson.loads(body)
        fields = doc["fields"]
        for row in doc["rows"]:
            read(state, dict(zip(fields, row, strict=True)))
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotFormatError(f"sampler snapshot chunk {part!r} unreadable: {exc!r}") from exc


def load(tenant_id: str, parts: Iterable[tuple[str, bytes]]) -> SamplerState:
    state = SamplerState(tenant_id=tenant_id)
    for part, body in parts:
        add(state, part, body)
    return state
