"""Scoring's own schema: scorecard versions, tenant scoring settings, stored conversations, reviews, and the
human review workflow (reviewer pools, assignments, review revisions, disputes, calibration sessions)."""

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

# --- the human review workflow (migration 0002) ---------------------------------------------------

# Manual reviews live in `reviews` too (kind "manual"), as their current revision; every revision, the
# first included, is kept in `review_versions`.
for _column in (
    Column("revision", Integer, nullable=False, server_default="1"),
    Column("assignment_id", String(64), nullable=True),
    Column("time_spent_s", Float, nullable=True),
    Column("comments", JSONB, nullable=True),
    Column("idempotency_key", String(200), nullable=True),
):
    reviews.append_column(_column)
Index(
    "reviews_one_per_assignment",
    reviews.c.assignment_id,
    unique=True,
    postgresql_where=reviews.c.assignment_id.is_not(None),
)
Index(
    "reviews_by_idempotency_key",
    reviews.c.tenant_id,
    reviews.c.idempotency_key,
    unique=True,
    postgresql_where=reviews.c.idempotency_key.is_not(None),
)
Index("reviews_page", reviews.c.tenant_id, reviews.c.submitted_at, reviews.c.review_id)

# A tenant's reviewers (weights, quotas, the team each leads) and its review options (blind, skip leads).
reviewer_pools = Table(
    "reviewer_pools",
    metadata,
    tenant_id(primary_key=True),
    Column("body", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
assignments = Table(
    "assignments",
    metadata,
    Column("assignment_id", String(64), primary_key=True),
    tenant_id(),
    conversation_id(),
    # NULL: in the tenant's unassigned pool (no eligible reviewer had quota left, or it was skipped).
    Column("reviewer_id", String(200), nullable=True),
    Column("status", String(16), nullable=False),  # open | completed | removed
    Column("agent_id", String(200), nullable=True),
    # Every agent of the conversation: none of them may review it.
    Column("agent_ids", ARRAY(String(200)), nullable=False, server_default="{}"),
    Column("team", String(200), nullable=True),
    Column("channel", String(16), nullable=True),
    # The tenant's active scorecard version when the sample arrived: the one the reviewer rates against.
    Column("scorecard_id", String(64), nullable=False),
    Column("scorecard_version", Integer, nullable=False),
    Column("plan_id", String(200), nullable=True),
    Column("inclusion_probability", Float, nullable=True),
    # The quota period the split counted it in (the sample's day), so a replay counts the same way.
    Column("period_day", DateTime(timezone=True), nullable=False),
    Column("skipped_by", ARRAY(String(200)), nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=True),
    Column("draft", JSONB, nullable=True),
    Column("draft_saved_at", DateTime(timezone=True), nullable=True),
    Column("review_id", String(64), nullable=True),
    # A reviewer's open queue, and the unassigned pool (reviewer_id NULL), oldest first.
    Index(
        "assignments_open_queue",
        "tenant_id",
        "reviewer_id",
        "created_at",
        "assignment_id",
        postgresql_where=text("status = 'open'"),
    ),
    Index("assignments_page", "tenant_id", "created_at", "assignment_id"),
    Index("assignments_quota", "tenant_id", "reviewer_id", "period_day"),
)
assignment_log = Table(
    "assignment_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    tenant_id(),
    Column("assignment_id", String(64), nullable=False, index=True),
    Column("action", String(16), nullable=False),
    Column("reviewer_id", String(200), nullable=True),
    Column("previous_reviewer_id", String(200), nullable=True),
    Column("reason", Text, nullable=True),
    Column("by", String(200), nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)
review_versions = Table(
    "review_versions",
    metadata,
    tenant_id(),
    Column("review_id", String(64), nullable=False),
    Column("revision", Integer, nullable=False),
    # The whole review as it was at this revision (the ReviewSubmitted / ReviewRevised payload).
    Column("body", JSONB, nullable=False),
    Column("reason", Text, nullable=True),
    Column("dispute_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("review_id", "revision"),
)
disputes = Table(
    "disputes",
    metadata,
    Column("dispute_id", String(64), primary_key=True),
    tenant_id(),
    Column("review_id", String(64), nullable=False),
    conversation_id(),
    Column("category_id", String(64), nullable=True),
    Column("agent_id", String(200), nullable=True),
    Column("team", String(200), nullable=True),
    # The review's reviewer, who may resolve it (and sees it in their list).
    Column("reviewer_id", String(200), nullable=True),
    Column("opened_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(24), nullable=False),  # open | accepted | partially_accepted | rejected
    Column("resolved_by", String(200), nullable=True),
    Column("comment", Text, nullable=True),
    Column("revision", Integer, nullable=True),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Index("disputes_by_review", "tenant_id", "review_id"),
    Index("disputes_page", "tenant_id", "opened_at", "dispute_id"),
    # One open dispute per review and category ('' = the whole review).
    Index(
        "disputes_one_open",
        "review_id",
        text("coalesce(category_id, '')"),
        unique=True,
        postgresql_where=text("status = 'open'"),
    ),
)
calibration_sessions = Table(
    "calibration_sessions",
    metadata,
    Column("session_id", String(64), primary_key=True),
    tenant_id(),
    Column("name", Text, nullable=True),  # migration 0003
    Column("scorecard_id", String(64), nullable=False),
    Column("scorecard_version", Integer, nullable=False),
    Column("conversation_ids", ARRAY(String(200)), nullable=False),
    Column("participants", ARRAY(String(200)), nullable=False),
    Column("benchmark_reviewer_id", String(200), nullable=True),
    Column("deadline", DateTime(timezone=True), nullable=False),
    Column("opened_by", String(200), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("results", JSONB, nullable=True),
    Index("calibrations_page", "tenant_id", "opened_at", "session_id"),
)
# Calibration ratings are kept apart from `reviews`, so they can never count toward IQS.
calibration_reviews = Table(
    "calibration_reviews",
    metadata,
    Column("session_id", String(64), nullable=False),
    tenant_id(),
    Column("reviewer_id", String(200), nullable=False),
    conversation_id(),
    Column("review_id", String(64), nullable=False, unique=True),
    Column("ratings", JSONB, nullable=False),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("session_id", "reviewer_id", "conversation_id"),
)
WORKFLOW_TABLES = (
    reviewer_pools,
    assignments,
    assignment_log,
    review_versions,
    disputes,
    calibration_sessions,
    calibration_reviews,
)
tables.update({t.name: t for t in WORKFLOW_TABLES})

# --- pCSAT (migration 0004) -----------------------------------------------------------------------

# The predicted satisfaction of an AutoQA review, as published in ReviewSubmitted.pcsat (null on manual ones).
reviews.append_column(Column("pcsat", JSONB, nullable=True))
