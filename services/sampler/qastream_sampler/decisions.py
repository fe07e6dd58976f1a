"""Sampling decisions: the stable hash they are drawn from, and the record each one leaves."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from qastream_shared.conversation import Conversation
from qastream_shared.events import ConversationIngested, ConversationSampled, Purpose, deterministic_id

_53_BITS = float(1 << 53)


def uniform(tenant_id: str, plan_id: str, plan_version: int, conversation_id: str, seed: int) -> float:
    """A uniform draw in [0, 1) that depends only on its arguments, in every process and on every replay.

    blake2b, not Python's hash() (salted per process) nor `random` (order-dependent); 53 bits so the float
    is exact and never rounds up to 1.0.
    """
    key = f"{tenant_id}\x1f{plan_id}\x1f{plan_version}\x1f{conversation_id}\x1f{seed}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / _53_BITS


@dataclass(slots=True)
class Decision:
    """One plan picked one conversation for one purpose. At most one per (conversation, purpose, plan).

    Treat it as immutable (not frozen only because frozen dataclasses are slow to build on the hot path).
    `decided_at` is an event time (the conversation's, the feedback's or the slot end), never the wall clock,
    so a replay reproduces it.
    """

    conversation_id: str
    purpose: Purpose
    plan_id: str
    plan_version: int
    priority: int
    stratum: str | None
    rule: str | None
    inclusion_probability: float
    reason: str
    decided_at: datetime

    @property
    def key(self) -> tuple[str, Purpose, str]:
        return (self.conversation_id, self.purpose, self.plan_id)


def decision_event_id(tenant_id: str, decision: Decision) -> str:
    """The ce_id of the ConversationSampled event, identical on replay so the inbox drops duplicates."""
    return deterministic_id(
        "sampled", tenant_id, decision.conversation_id, decision.purpose, decision.plan_id
    )


def to_event(decision: Decision, conversation: Conversation) -> ConversationSampled:
    return ConversationSampled(
        conversation_id=decision.conversation_id,
        purpose=decision.purpose,
        plan_id=decision.plan_id,
        plan_version=decision.plan_version,
        stratum=decision.stratum,
        rule=decision.rule,
        inclusion_probability=decision.inclusion_probability,
        reason=decision.reason,
        conversation=conversation,
        sampled_at=decision.decided_at,
    )


# The JSON ingest publishes a ConversationIngested with: its conversation first, then the fields after it.
_FIELDS = list(ConversationIngested.model_fields)
assert _FIELDS[0] == "conversation", _FIELDS
_HEAD = b'{"conversation":'
_AFTER = f',"{_FIELDS[1]}":'.encode()


def sampled_json(event: ConversationSampled, ingested: bytes) -> bytes | None:
    """The event's JSON with its conversation as the bytes it was ingested with, instead of dumped again from
    the model (most of what publishing a decision cost: a conversation is kilobytes, the rest a few fields).
    None when `ingested` is not laid out as ingest writes it; the caller then dumps the model.

    Inside a JSON string a quote is escaped, so `,"ingested_at":` unescaped is structure: its last occurrence
    ends the top-level conversation object (fields after the conversation are scalars)."""
    if not ingested.startswith(_HEAD):
        return None
    end = ingested.rfind(_AFTER)
    if end < 0:
        return None
    rest = event.model_dump_json(exclude={"conversation"}).encode()
    return rest[:-1] + b',"conversation":' + ingested[len(_HEAD) : end] + b"}"
