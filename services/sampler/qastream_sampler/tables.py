"""Sampler's own schema. The quota/pool state is event-sourced: `inputs` holds the consumed facts in partition
order since the latest snapshot (`snapshot_chunks`) and `sample_log` every decision; the in-memory engine state is
rebuilt from the snapshot and the inputs after it whenever needed."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from qastream_shared.platform_tables import (
    add_platform_tables,
    conversation_id,
    tenant_id,
    versioned_documents,
)

metadata = MetaData()
tables = add_platform_tables(metadata)

inputs = Table(
    "inputs",
    metadata,
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    tenant_id(),
    conversation_id(),
    Column("ce_type", String(100), nullable=False),
    Column("body", LargeBinary, nullable=False),
    # A conversation's event time, agent and team, copied out of its body so that explain can find the
    # conversations sharing its pools (and the partitions' highs) without reading every body.
    Column("event_time", DateTime(timezone=True), nullable=True),
    Column("agent_id", Text, nullable=True),
    Column("team", Text, nullable=True),
    PrimaryKeyConstraint("topic", "partition", "offset"),
    Index("inputs_by_conversation", "tenant_id", "conversation_id"),
    Index("inputs_by_event_time", "tenant_id", "event_time"),
)
input_heads = Table(
    "input_heads",
    metadata,
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("head", BigInteger, nullable=False),
    PrimaryKeyConstraint("topic", "partition"),
)
sample_log = Table(
    "sample_log",
    metadata,
    tenant_id(),
    conversation_id(),
    Column("purpose", String(16), nullable=False),
    Column("plan_id", String(100), nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("stratum", Text, nullable=True),
    Column("rule", Text, nullable=True),
    Column("inclusion_probability", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("event_id", String(64), nullable=False),
    PrimaryKeyConstraint("tenant_id", "conversation_id", "purpose", "plan_id"),
)
# The latest state snapshot (`snapshot_store`): each tenant's engine state in chunks (`engine.snapshot`), and
# one mark row with the input offsets it covers and the store's own state; inputs it covers are compacted away.
snapshot_chunks = Table(
    "snapshot_chunks",
    metadata,
    tenant_id(),
    Column("seq", Integer, nullable=False),  # the chunk's place in its tenant's state
    Column("part", String(40), nullable=False),  # which part of the state it holds
    Column("body", LargeBinary, nullable=False),  # JSON
    PrimaryKeyConstraint("tenant_id", "seq"),
)
snapshot_mark = Table(
    "snapshot_mark",
    metadata,
    Column("id", Integer, nullable=False),  # always 1: there is one latest snapshot
    Column("format", Integer, nullable=False),
    Column("cursors", JSONB, nullable=False),  # [[topic, partition, offset], ...]: what it covers
    Column("body", LargeBinary, nullable=False),  # the store's own state, JSON
    Column("compacted", BigInteger, nullable=False),  # inputs deleted by all snapshots so far
    Column("taken_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("id"),
)
plans = versioned_documents("plans", metadata, Column("plan_id", String(100), nullable=False))
auto_policies = versioned_documents("auto_policies", metadata)
tables.update(
    inputs=inputs,
    input_heads=input_heads,
    sample_log=sample_log,
    snapshot_chunks=snapshot_chunks,
    snapshot_mark=snapshot_mark,
    plans=plans,
    auto_policies=auto_policies,
)
