"""Scoring's own schema: scorecard versions, tenant scoring settings, stored conversations and reviews."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
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

scorecards = versioned_documents(
    "scorecards", metadata, Column("scorecard_id", String(64), nullable=False), stamped="published_at"
)
scoring_settings = Table(
    "scoring_settings",
    metadata,
    tenant_id(primary_key=True),
    Column("settings", JSONB, nullable=False),
    # The scorecard AutoQA uses for new conversations; its latest version applies.
    Column("active_scorecard_id", String(64), nullable=False),
)
# The redacted conversation of every sample, kept for re-scoring until the tenant's retention purges it.
conversations = Table(
    "conversations",
    metadata,
    tenant_id(),
    conversation_id(),
    Column("body", LargeBinary, nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("stored_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "conversation_id"),
)
reviews = Table(
    "reviews",
    metadata,
    Column("review_id", String(64), primary_key=True),
    tenant_id(),
    conversation_id(),
    Column("kind", String(16), nullable=False),
    Column("scorecard_id", String(64), nullable=False),
    Column("scorecard_version", Integer, nullable=False),
    Column("scorer_versions", JSONB, nullable=False),
    # Each rating with its provenance, rating by rating, as published in ReviewSubmitted.
    Column("ratings", JSONB, nullable=False),
    Column("score", Float, nullable=True),
    Column("auto_failed", Boolean, nullable=False),
    Column("passed", Boolean, nullable=True),
    Column("agent_id", String(200), nullable=True),
    Column("team", String(200), nullable=True),
    Column("channel", String(16), nullable=True),
    Column("reviewer_id", String(200), nullable=True),
    Column("inclusion_probability", Float, nullable=True),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Index("reviews_by_conversation", "tenant_id", "conversation_id"),
)
tables.update(
    scorecards=scorecards, scoring_settings=scoring_settings, conversations=conversations, reviews=reviews
)
