"""Tables every service owns a copy of in its own schema: outbox, inbox, and the tenant/key directory.

They are attached to each service's MetaData so a service's Alembic history creates them in its schema.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB


def tenant_id(**kw: Any) -> Column[str]:
    """Every row of every table carries its tenant."""
    return Column("tenant_id", String(64), nullable=kw.pop("nullable", False), **kw)


def conversation_id(**kw: Any) -> Column[str]:
    return Column("conversation_id", String(200), nullable=False, **kw)


def versioned_documents(
    name: str, metadata: MetaData, *key: Column[Any], stamped: str = "created_at"
) -> Table:
    """A tenant's immutable JSON documents (plans, scorecards): an edit inserts version n+1, never updates."""
    return Table(
        name,
        metadata,
        tenant_id(),
        *key,
        Column("version", Integer, nullable=False),
        Column("body", JSONB, nullable=False),
        Column(stamped, DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("tenant_id", *(c.name for c in key), "version"),
    )


def add_platform_tables(metadata: MetaData) -> dict[str, Table]:
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        tenant_id(),
        Column("topic", Text, nullable=False),
        Column("key", LargeBinary, nullable=True),
        Column("value", LargeBinary, nullable=False),
        # JSON written by orjson (outbox.pack_headers): cheaper than JSONB through the driver's json module.
        Column("headers", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Index("outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    )
    inbox = Table(
        "inbox",
        metadata,
        # ce_id for valid events; topic/partition/offset for records that never parsed.
        Column("event_id", Text, primary_key=True),
        tenant_id(nullable=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    api_keys = Table(
        "api_keys",
        metadata,
        Column("key_id", String(64), primary_key=True),
        tenant_id(index=True),
        Column("key_hash", String(128), nullable=False),
        Column("role", String(32), nullable=False),
        Column("agent_id", String(200), nullable=True),
        Column("team", String(200), nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("revoked_at", DateTime(timezone=True), nullable=True),
    )
    tenants = Table(
        "tenants",
        metadata,
        tenant_id(primary_key=True),
        Column("name", Text, nullable=False),
        Column("retention_days", BigInteger, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    return {"outbox": outbox, "inbox": inbox, "api_keys": api_keys, "tenants": tenants}
