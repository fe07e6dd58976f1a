"""The sample log: each decision stored once (its primary key), and ConversationSampled published for the
ones that are new, carrying the conversation they are about."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_sampler.decisions import Decision, decision_event_id, sampled_json, to_event
from qastream_sampler.tables import inputs, sample_log
from qastream_shared.conversation import Conversation
from qastream_shared.db import array_insert, array_params
from qastream_shared.events import ConversationIngested, Envelope, conversation_key
from qastream_shared.topics import SAMPLES
from qastream_shared.unit_of_work import UnitOfWork

SOURCE = "sampler"
_LOG_COLUMNS = (
    "tenant_id", "conversation_id", "purpose", "plan_id", "plan_version", "priority", "stratum", "rule",
    "inclusion_probability", "reason", "decided_at", "event_id",
)  # fmt: skip
# RETURNING names the rows that are new, which are the ones to publish.
_LOG_INSERT = array_insert(
    sample_log,
    _LOG_COLUMNS,
    suffix="ON CONFLICT DO NOTHING RETURNING tenant_id, conversation_id, purpose, plan_id",
)

# Two arrays joined through the (tenant, conversation) index: one statement text whatever the number of keys,
# where a row-value IN list was a new statement (compile, prepare, plan) for every batch.
_STORED_CONVERSATIONS = text(
    f"SELECT i.tenant_id, i.conversation_id, i.body FROM {inputs.name} i"
    " JOIN unnest(CAST(:tenants AS text[]), CAST(:ids AS text[])) AS k(tenant_id, conversation_id)"
    f" USING (tenant_id, conversation_id) WHERE i.ce_type = '{ConversationIngested.TYPE}'"
)


async def publish(
    uow: UnitOfWork,
    decisions: list[tuple[str, Decision]],
    known: dict[tuple[str, str], Conversation],
    traces: dict[tuple[str, str], str | None] | None = None,
    ingested: dict[tuple[str, str], bytes] | None = None,
) -> int:
    """Logs each decision once and publishes ConversationSampled for the ones that are new.

    A decision about a conversation in this batch continues that conversation's trace (`traces`); one
    made later, when a slot closes, has a cause of its own and starts none. `ingested` holds the
    ConversationIngested JSON of conversations in `known`, whose bytes the events carry (`sampled_json`)."""
    ingested = dict(ingested or {})
    if not decisions:
        return 0
    rows = {}
    chosen: dict[tuple[str, str, str, str], tuple[str, Decision]] = {}
    event_ids: dict[tuple[str, str, str, str], str] = {}
    for tenant, d in decisions:
        key = (tenant, d.conversation_id, d.purpose.value, d.plan_id)
        chosen[key] = (tenant, d)
        event_ids[key] = decision_event_id(tenant, d)
        rows[key] = {
            "tenant_id": tenant,
            "conversation_id": d.conversation_id,
            "purpose": d.purpose.value,
            "plan_id": d.plan_id,
            "plan_version": d.plan_version,
            "priority": d.priority,
            "stratum": d.stratum,
            "rule": d.rule,
            "inclusion_probability": d.inclusion_probability,
            "reason": d.reason,
            "decided_at": d.decided_at,
            "event_id": event_ids[key],
        }
    # Sorted, so two replicas inserting the same close decisions take row locks in the same order.
    keys = sorted(rows)
    result = await uow.session.execute(_LOG_INSERT, array_params(_LOG_COLUMNS, [rows[k] for k in keys]))
    inserted: set[tuple[Any, ...]] = {tuple(r) for r in result}
    # Each logged decision once, even if tailing and closing both produced it in this batch.
    new = [(key, *chosen[key]) for key in keys if key in inserted]
    missing = {(t, d.conversation_id) for _, t, d in new if (t, d.conversation_id) not in known}
    if missing:
        stored = await _conversations(uow.session, missing)
        known = {**known, **{k: conv for k, (conv, _) in stored.items()}}
        ingested.update((k, body) for k, (_, body) in stored.items())
    for key, tenant, d in new:
        conv = known[(tenant, d.conversation_id)]
        event = to_event(d, conv)
        body = ingested.get((tenant, d.conversation_id))
        uow.publish(
            SAMPLES,
            Envelope(
                data=event,
                source=SOURCE,
                tenant=tenant,
                key=conversation_key(tenant, d.conversation_id),
                subject=d.conversation_id,
                id=event_ids[key],
                traceparent=(traces or {}).get((tenant, d.conversation_id)),
                _value=sampled_json(event, body) if body else None,
            ),
        )
    return len(new)


async def _conversations(
    session: AsyncSession, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[Conversation, bytes]]:
    """The stored conversations, and the ConversationIngested JSON each came in."""
    tenants, ids = zip(*keys, strict=True)
    rows = await session.execute(_STORED_CONVERSATIONS, {"tenants": tenants, "ids": ids})
    return {
        (tenant, cid): (Conversation.model_validate(orjson.loads(body)["conversation"]), body)
        for tenant, cid, body in rows
    }
