"""Coaching's own schema: rules (versioned), the review facts rules read, tasks and their evidence, alerts,
and outbound webhooks with their deliveries and every attempt."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Sequence,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from qastream_shared.platform_tables import (
    add_platform_tables,
    conversation_id,
    tenant_id,
    versioned_documents,
)

metadata = MetaData()
tables = add_platform_tables(metadata)

rules = versioned_documents("rules", metadata, Column("rule_id", String(64), nullable=False))
# Categories of the tenant's scorecards (from qa.scorecards) and of the reviews seen: what a rule may watch.
categories = Table(
    "categories",
    metadata,
    tenant_id(),
    Column("category_id", String(64), nullable=False),
    Column("critical", Boolean, nullable=False, server_default=text("false")),
    PrimaryKeyConstraint("tenant_id", "category_id"),
)
# Every insert or update of a stored review takes the next number: how the history cache tells that an
# agent's rows changed (see history.py).
review_writes = Sequence("review_writes", metadata=metadata)
# The latest revision of every review (calibration reviews excluded): the history rules and impact read.
reviews = Table(
    "reviews",
    metadata,
    tenant_id(),
    Column("review_id", String(64), nullable=False),
    conversation_id(),
    Column("agent_id", String(200), nullable=False),
    Column("team", String(200), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),  # event time: the original submission
    Column("score", Float, nullable=True),
    Column("passed", Boolean, nullable=True),
    Column("auto_failed", Boolean, nullable=False),
    Column("categories", JSONB, nullable=False),  # category → score
    Column("evidence", JSONB, nullable=False),  # category → [{turn, quote}] for its weak ratings
    Column("write_seq", BigInteger, nullable=False, server_default=review_writes.next_value()),
    PrimaryKeyConstraint("tenant_id", "review_id"),
    Index("reviews_by_agent", "tenant_id", "agent_id", "at", postgresql_include=["write_seq"]),
)
rejections = Table(
    "rejections",
    metadata,
    tenant_id(),
    Column("dispute_id", String(64), nullable=False),
    Column("review_id", String(64), nullable=False),
    Column("agent_id", String(200), nullable=False),
    Column("team", String(200), nullable=True),
    Column("category_id", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "dispute_id"),
    Index("rejections_by_agent", "tenant_id", "agent_id", "at"),
)
# A fresh number for a task whenever evidence is removed from it: how the record of the evidence known stored
# tells that it no longer holds (see known_evidence.py).
evidence_writes = Sequence("evidence_writes", metadata=metadata)
tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String(64), primary_key=True),
    tenant_id(),
    # agent, category and polarity: one open task per slot; evidence for it joins that task.
    Column("slot", Text, nullable=False),
    Column("rule_id", String(64), nullable=False),
    Column("rule_version", Integer, nullable=False),
    Column("agent_id", String(200), nullable=False),
    Column("team", String(200), nullable=True),
    Column("assignee_id", String(200), nullable=True),
    Column("category_id", String(64), nullable=True),
    Column("title", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("needs_confirmation", Boolean, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),  # event time of the first firing
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("notes", Text, nullable=True),
    Column("quiz_score", Float, nullable=True),
    Column("dismiss_reason", Text, nullable=True),
    Column("impact_reviews", Integer, nullable=False),
    Column("impact", JSONB, nullable=True),
    # Dismissed by coaching itself because no firing makes its case any more (a late review, a revision): such a
    # task never existed in event time, so it does not count among its slot's closed tasks, and the slot's next
    # task takes up its id again (see task_updates.task_id_of), one generation later.
    Column("withdrawn", Boolean, nullable=False, server_default=text("false")),
    Column("generation", Integer, nullable=False, server_default=text("0")),
    Column("evidence_seq", BigInteger, nullable=False, server_default=evidence_writes.next_value()),
    Index(
        "tasks_one_open_per_slot",
        "tenant_id",
        "slot",
        unique=True,
        postgresql_where=text("status IN ('open', 'acknowledged')"),
    ),
    Index("tasks_by_agent", "tenant_id", "agent_id", "status"),
    Index("tasks_by_team", "tenant_id", "team", "opened_at"),
)
evidence = Table(
    "evidence",
    metadata,
    tenant_id(),
    Column("task_id", String(64), nullable=False),
    Column("review_id", String(64), nullable=False),
    Column("conversation_id", String(200), nullable=False),
    Column("rule_id", String(64), nullable=False),
    Column("rule_version", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("quotes", JSONB, nullable=False),  # [{turn, quote}] the scorer or reviewer pointed at
    PrimaryKeyConstraint("tenant_id", "task_id", "review_id"),
)
alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    tenant_id(),
    Column("review_id", String(64), nullable=False),
    Column("agent_id", String(200), nullable=True),
    Column("team", String(200), nullable=True),
    Column("rule_id", String(64), nullable=True),
    Column("reason", Text, nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
)
webhooks = Table(
    "webhooks",
    metadata,
    Column("webhook_id", String(64), primary_key=True),
    tenant_id(index=True),
    Column("url", Text, nullable=False),
    Column("event_types", ARRAY(Text), nullable=False),
    Column("secret", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
deliveries = Table(
    "deliveries",
    metadata,
    Column("delivery_id", String(64), primary_key=True),
    tenant_id(),
    Column("webhook_id", String(64), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("body", LargeBinary, nullable=False),
    # pending → delivered, or dead after the last attempt; a replay puts it back to pending.
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Index("deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index("deliveries_by_webhook", "tenant_id", "webhook_id", "created_at"),
)
attempts = Table(
    "attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    tenant_id(),
    Column("delivery_id", String(64), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Float, nullable=False),
)
tables.update(
    rules=rules,
    categories=categories,
    reviews=reviews,
    rejections=rejections,
    tasks=tasks,
    evidence=evidence,
    alerts=alerts,
    webhooks=webhooks,
    deliveries=deliveries,
    attempts=attempts,
)
