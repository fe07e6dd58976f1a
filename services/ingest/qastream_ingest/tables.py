"""Ingest's own schema: stored (redacted) conversations, feedback, redaction policies, tenants and keys."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from qastream_shared.platform_tables import add_platform_tables, conversation_id, tenant_id

metadata = MetaData()
tables = add_platform_tables(metadata)

conversations = Table(
    "conversations",
    metadata,
    tenant_id(),
    conversation_id(),
    Column("channel", String(16), nullable=False),
    Column("agent_id", String(200), nullable=True),
    Column("team", String(200), nullable=True),
    # The redacted conversation exactly as published; the original text is never stored.
    Column("body", LargeBinary, nullable=False),
    Column("redactions", JSONB, nullable=False),
    Column("ingested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # When the conversation happened (`conversation_time`): its maximum is what the heartbeats announce.
    Column("event_time", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("tenant_id", "conversation_id"),
    Index("conversations_by_event_time", "event_time"),
)
feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    tenant_id(),
    conversation_id(),
    Column("kind", String(16), nullable=False),
    Column("body", JSONB, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
redaction_policies = Table(
    "redaction_policies",
    metadata,
    tenant_id(primary_key=True),
    Column("policy", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
tables.update(conversations=conversations, feedback=feedback, redaction_policies=redaction_policies)
__all__ = ["conversations", "feedback", "metadata", "redaction_policies", "tables"]
