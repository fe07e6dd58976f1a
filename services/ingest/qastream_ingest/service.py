"""Ingest's use cases: accept conversations, record late facts, manage tenants and keys.

Each function runs inside one unit of work, so stored rows and the events they publish commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from qastream_ingest.redaction import RedactionPolicy, Redactor, tenant_pepper
from qastream_ingest.tables import conversations, feedback, redaction_policies, tables
from qastream_shared.auth import Principal, visible
from qastream_shared.conversation import Conversation, Feedback
from qastream_shared.events import (
    ApiKeyIssued,
    ApiKeyRevoked,
    ConversationIngested,
    ConversationUpdated,
    CsatRecorded,
    Envelope,
    Role,
    TenantUpserted,
    conversation_key,
    conversation_time,
)
from qastream_shared.keys import generate_key
from qastream_shared.topics import CONVERSATIONS, TENANTS
from qastream_shared.unit_of_work import UnitOfWork

SOURCE = "ingest"


@dataclass
class ItemResult:
    index: int
    status: str  # accepted | duplicate | rejected
    conversation_id: str | None = None
    reason: str | None = None
    errors: list[dict[str, str]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def validate_items(raw_items: list[Any]) -> tuple[list[tuple[int, Conversation]], list[ItemResult]]:
    """Splits raw JSON items into valid conversations and per-item rejections naming the field."""
    valid: list[tuple[int, Conversation]] = []
    rejected: list[ItemResult] = []
    for i, raw in enumerate(raw_items):
        try:
            conv = Conversation.model_validate(raw)
            if nul := nul_field(conv):
                cid = None if nul == "conversation_id" else conv.conversation_id
                reason = f"{nul}: must not contain NUL characters"
                rejected.append(ItemResult(i, "rejected", cid, reason, [{"field": nul, "message": reason}]))
                continue
            valid.append((i, conv))
        except ValidationError as exc:
            errors = [
                {"field": ".".join(str(p) for p in e["loc"]) or "item", "message": e["msg"]}
                for e in exc.errors()[:20]
            ]
            cid = raw.get("conversation_id") if isinstance(raw, dict) else None
            rejected.append(
                ItemResult(
                    i,
                    "rejected",
                    cid if isinstance(cid, str) else None,
                    "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3]),
                    errors,
                )
            )
    return valid, rejected


def nul_field(conv: Conversation) -> str | None:
    """The first identifier holding a NUL: PostgreSQL text (here and downstream) cannot store one."""
    if "\x00" in conv.conversation_id:
        return "conversation_id"
    for n, agent in enumerate(conv.agent_ids):
        if "\x00" in agent:
            return f"agent_ids.{n}"
    for name in ("team", "customer_id", "language"):
        if "\x00" in (getattr(conv, name) or ""):
            return name
    return None


class Redactors:
    """Compiled redaction policies per tenant, rebuilt only when the stored policy changes."""

    def __init__(self, master_pepper: str) -> None:
        self.master_pepper = master_pepper
        self._cache: dict[str, tuple[Any, Redactor]] = {}

    async def for_tenant(self, uow: UnitOfWork, tenant_id: str) -> Redactor:
        stored = (
            await uow.session.execute(
                select(redaction_policies.c.policy).where(redaction_policies.c.tenant_id == tenant_id)
            )
        ).scalar_one_or_none()
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] == stored:
            return cached[1]
        policy = RedactionPolicy.model_validate(stored) if stored else RedactionPolicy()
        redactor = Redactor(policy, tenant_pepper(self.master_pepper, tenant_id))
        self._cache[tenant_id] = (stored, redactor)
        return redactor


_INSERT = pg_insert(conversations).on_conflict_do_nothing().returning(conversations.c.conversation_id)


async def accept(
    uow: UnitOfWork,
    redactors: Redactors,
    tenant_id: str,
    items: list[tuple[int, Conversation]],
    *,
    traceparent: str | None = None,
    traceparents: dict[int, str | None] | None = None,
) -> list[ItemResult]:
    """Stores new conversations (redacted) and their ConversationIngested events; resends are duplicates.

    `traceparent` is the trace of a whole HTTP batch; `traceparents` gives streamed items their own."""
    if not items:
        return []
    redactor = await redactors.for_tenant(uow, tenant_id)
    now = datetime.now(UTC)
    first: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    envs: dict[str, Envelope] = {}
    for index, conv in items:
        if conv.conversation_id in first:
            continue
        first[conv.conversation_id] = index
        red = redactor.redact(conv)
        clean = red.conversation
        env = Envelope(
            data=ConversationIngested(conversation=clean, ingested_at=now),
            source=SOURCE,
            tenant=tenant_id,
            key=conversation_key(tenant_id, clean.conversation_id),
            subject=clean.conversation_id,
            traceparent=traceparents.get(index) if traceparents is not None else traceparent,
        )
        envs[clean.conversation_id] = env
        rows.append(
            {
                "tenant_id": tenant_id,
                "conversation_id": clean.conversation_id,
                "channel": clean.channel.value,
                "agent_id": clean.agent_id,
                "team": clean.team,
                # The stored body is the event's payload, so each conversation is serialised once.
                "body": env.value(),
                "redactions": red.counts,
                "event_time": conversation_time(clean, now),
            }
        )
    # Rows as executemany parameters, not .values(rows): the statement then compiles once and is cached
    # (SQLAlchemy still sends one multi-row INSERT), where a multi-VALUES statement compiled per batch.
    inserted = set((await uow.session.execute(_INSERT, rows)).scalars().all())
    # In the order posted, not the set's (string hashes are salted per process): on a partition the
    # sampler judges each conversation against the event times before it, so the order decides.
    for cid, env in envs.items():
        if cid in inserted:
            uow.publish(CONVERSATIONS, env)
    results = []
    for index, conv in items:
        cid = conv.conversation_id
        if cid in inserted and first[cid] == index:
            results.append(ItemResult(index, "accepted", cid))
        else:
            results.append(ItemResult(index, "duplicate", cid, "already ingested; nothing changed"))
    return results


async def stored_conversation(
    uow: UnitOfWork, principal: Principal, conversation_id: str
) -> dict[str, Any] | None:
    q = select(conversations).where(
        visible(conversations, principal), conversations.c.conversation_id == conversation_id
    )
    row = (await uow.session.execute(q)).mappings().first()
    if row is None:
        return None
    body: dict[str, Any] = orjson.loads(row["body"])["conversation"]
    body["ingested_at"] = row["ingested_at"].isoformat()
    body["redactions"] = row["redactions"]
    return body


async def _exists(uow: UnitOfWork, tenant_id: str, conversation_id: str) -> bool:
    q = select(conversations.c.conversation_id).where(
        conversations.c.tenant_id == tenant_id, conversations.c.conversation_id == conversation_id
    )
    return (await uow.session.execute(q)).first() is not None


async def record_feedback(
    uow: UnitOfWork, tenant_id: str, conversation_id: str, fb: Feedback, traceparent: str | None = None
) -> bool:
    if not await _exists(uow, tenant_id, conversation_id):
        return False
    now = datetime.now(UTC)
    await uow.session.execute(
        feedback.insert().values(
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            kind="feedback",
            body=fb.model_dump(mode="json"),
        )
    )
    data = CsatRecorded(conversation_id=conversation_id, recorded_at=now, **fb.model_dump())
    uow.publish(CONVERSATIONS, _event(tenant_id, conversation_id, data, traceparent))
    return True


async def record_update(
    uow: UnitOfWork,
    tenant_id: str,
    conversation_id: str,
    escalated: bool | None,
    reopened: bool | None,
    traceparent: str | None = None,
) -> bool:
    if not await _exists(uow, tenant_id, conversation_id):
        return False
    now = datetime.now(UTC)
    body = {"escalated": escalated, "reopened": reopened}
    await uow.session.execute(
        feedback.insert().values(
            tenant_id=tenant_id, conversation_id=conversation_id, kind="event", body=body
        )
    )
    data = ConversationUpdated(conversation_id=conversation_id, occurred_at=now, **body)
    uow.publish(CONVERSATIONS, _event(tenant_id, conversation_id, data, traceparent))
    return True


def _event(tenant_id: str, conversation_id: str, data: Any, traceparent: str | None) -> Envelope:
    return Envelope(
        data=data,
        source=SOURCE,
        tenant=tenant_id,
        key=conversation_key(tenant_id, conversation_id),
        subject=conversation_id,
        traceparent=traceparent,
    )


# --- tenants and keys ------------------------------------------------------------------------


async def create_tenant(
    uow: UnitOfWork, tenant_id: str, name: str, retention_days: int | None = None
) -> bool:
    tenants = tables["tenants"]
    inserted = (
        await uow.session.execute(
            pg_insert(tenants)
            .values(tenant_id=tenant_id, name=name, retention_days=retention_days)
            .on_conflict_do_nothing()
            .returning(tenants.c.tenant_id)
        )
    ).first()
    if inserted is None:
        return False
    uow.publish(
        TENANTS,
        Envelope(
            data=TenantUpserted(tenant_id=tenant_id, name=name, retention_days=retention_days),
            source=SOURCE,
            tenant=tenant_id,
            key=tenant_id,
            subject=tenant_id,
        ),
    )
    return True


async def create_key(
    uow: UnitOfWork, tenant_id: str, role: Role, agent_id: str | None = None, team: str | None = None
) -> tuple[str, str]:
    """Issues a key; returns (key_id, plaintext key), the only time the plaintext exists."""
    issued = generate_key(uow.settings.key_pepper)
    key_id, key, key_hash = issued.key_id, issued.key, issued.key_hash
    await uow.session.execute(
        tables["api_keys"]
        .insert()
        .values(
            key_id=key_id,
            tenant_id=tenant_id,
            key_hash=key_hash,
            role=role.value,
            agent_id=agent_id,
            team=team,
        )
    )
    uow.publish(
        TENANTS,
        Envelope(
            data=ApiKeyIssued(key_id=key_id, key_hash=key_hash, role=role, agent_id=agent_id, team=team),
            source=SOURCE,
            tenant=tenant_id,
            # Its own key on the compacted topic, so compaction never drops another key's record.
            key=f"{tenant_id}:key:{key_id}",
        ),
    )
    return key_id, key


async def revoke_key(uow: UnitOfWork, tenant_id: str, key_id: str) -> bool:
    k = tables["api_keys"]
    done = (
        await uow.session.execute(
            update(k)
            .where(k.c.tenant_id == tenant_id, k.c.key_id == key_id, k.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
            .returning(k.c.key_id)
        )
    ).first()
    if done is None:
        return False
    uow.publish(
        TENANTS,
        Envelope(
            data=ApiKeyRevoked(key_id=key_id),
            source=SOURCE,
            tenant=tenant_id,
            key=f"{tenant_id}:key:{key_id}",
        ),
    )
    return True


async def set_policy(uow: UnitOfWork, tenant_id: str, policy: RedactionPolicy) -> None:
    body = policy.model_dump(mode="json")
    stmt = pg_insert(redaction_policies).values(tenant_id=tenant_id, policy=body)
    await uow.session.execute(
        stmt.on_conflict_do_update(
            index_elements=[redaction_policies.c.tenant_id],
            set_={"policy": body, "updated_at": datetime.now(UTC)},
        )
    )
