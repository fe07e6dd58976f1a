"""Reporting's own schema: the current state of each fact it reports on, and the rollups (facts.ROLLUPS).

Rollup rows are sums per day and scope, so a query over a large tenant reads rollup rows, never every
review. A batch appends its differences to the rollup's delta table in its transaction; compaction folds
the deltas into the rollup now and then (deltas.py); reads sum both. Missing scope values (no team, say) are stored as "".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from qastream_reporting.facts import ROLLUPS
from qastream_shared.platform_tables import add_platform_tables, conversation_id, tenant_id

metadata = MetaData()
tables = add_platform_tables(metadata)


def _s(name: str, **kw: Any) -> Column[Any]:
    return Column(name, String(200), **kw)


def _t(name: str, **kw: Any) -> Column[Any]:
    return Column(name, DateTime(timezone=True), **kw)


conversations = Table(
    "conversations",
    metadata,
    tenant_id(),
    conversation_id(),
    Column("day", Date, nullable=False),
    _s("team"),
    _s("agent_id"),
    Column("channel", String(16)),
    Column("csat", Integer),
    Column("nps", Integer),
    Column("fcr", Boolean),
    Column("manual_probability", Float),
    PrimaryKeyConstraint("tenant_id", "conversation_id"),
)
# The current revision of every review, ratings included (as published, minus evidence quotes).
reviews = Table(
    "reviews",
    metadata,
    tenant_id(),
    Column("review_id", String(64), nullable=False),
    conversation_id(),
    Column("kind", String(16), nullable=False),
    Column("scorecard_id", String(64), nullable=False),
    Column("scorecard_version", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    _s("reviewer_id"),
    _s("agent_id"),
    _s("team"),
    Column("channel", String(16)),
    Column("score", Float),
    Column("auto_failed", Boolean, nullable=False),
    Column("passed", Boolean),
    Column("inclusion_probability", Float),
    Column("time_spent_s", Float),
    Column("pcsat", Float),
    _t("submitted_at", nullable=False),
    Column("day", Date, nullable=False),
    Column("ratings", JSONB, nullable=False),
    PrimaryKeyConstraint("tenant_id", "review_id"),
    Index("reviews_by_conversation", "tenant_id", "conversation_id"),
    Index("reviews_by_day", "tenant_id", "day", "review_id"),
)
disputes = Table(
    "disputes",
    metadata,
    tenant_id(),
    Column("dispute_id", String(64), nullable=False),
    Column("review_id", String(64), nullable=False),
    conversation_id(),
    Column("category_id", String(64)),
    _s("agent_id"),
    _s("team"),
    _s("opened_by"),
    _t("opened_at"),
    Column("day", Date, nullable=False),
    Column("outcome", String(32)),
    _s("resolved_by"),
    _t("resolved_at"),
    PrimaryKeyConstraint("tenant_id", "dispute_id"),
    Index("disputes_by_day", "tenant_id", "day", "dispute_id"),
)
assignments = Table(
    "assignments",
    metadata,
    tenant_id(),
    Column("assignment_id", String(64), nullable=False),
    conversation_id(),
    _s("reviewer_id"),
    Column("action", String(16), nullable=False),
    Column("inclusion_probability", Float),
    _t("created_at", nullable=False),
    _t("changed_at", nullable=False),
    Column("day", Date, nullable=False),
    # From the events; NULL where every event of the assignment predates these fields.
    _s("agent_id"),
    _s("team"),
    PrimaryKeyConstraint("tenant_id", "assignment_id"),
    # The rows assignments_with_scope joins to their conversation, found without scanning the others.
    Index(
        "assignments_without_scope",
        "tenant_id",
        "conversation_id",
        postgresql_where=text("agent_id IS NULL AND team IS NULL"),
    ),
)
# Risk alerts from coaching (qa.coaching RiskAlertRaised), one row each.
risk_alerts = Table(
    "risk_alerts",
    metadata,
    tenant_id(),
    Column("alert_id", String(64), nullable=False),
    Column("review_id", String(64), nullable=False),
    conversation_id(),
    _s("agent_id"),
    _s("team"),
    Column("rule_id", String(64)),
    Column("categories", Integer, nullable=False),
    Column("reason", String(2000), nullable=False),
    _t("raised_at", nullable=False),
    Column("day", Date, nullable=False),
    PrimaryKeyConstraint("tenant_id", "alert_id"),
    Index("risk_alerts_by_day", "tenant_id", "day", "alert_id"),
)
calibrations = Table(
    "calibrations",
    metadata,
    tenant_id(),
    Column("session_id", String(64), nullable=False),
    Column("scorecard_id", String(64), nullable=False),
    Column("scorecard_version", Integer, nullable=False),
    Column("conversations", Integer, nullable=False),
    Column("participants", Integer, nullable=False),
    _t("opened_at"),
    _t("closed_at"),
    Column("day", Date, nullable=False),
    Column("alpha", Float),
    Column("alpha_by_category", JSONB),
    PrimaryKeyConstraint("tenant_id", "session_id"),
    # A session's α is a tenant-wide figure: it has no agent or team (the visibility rule needs the columns).
    _s("agent_id"),
    _s("team"),
)
coaching_tasks = Table(
    "coaching_tasks",
    metadata,
    tenant_id(),
    Column("task_id", String(64), nullable=False),
    Column("rule_id", String(64), nullable=False),
    _s("agent_id", nullable=False),
    _s("team"),
    Column("category_id", String(64)),
    Column("status", String(16), nullable=False),
    _t("created_at", nullable=False),
    _t("updated_at", nullable=False),
    Column("day", Date, nullable=False),
    PrimaryKeyConstraint("tenant_id", "task_id"),
    Index("coaching_tasks_by_day", "tenant_id", "day", "task_id"),
)
coaching_impacts = Table(
    "coaching_impacts",
    metadata,
    tenant_id(),
    Column("task_id", String(64), nullable=False),
    Column("rule_id", String(64), nullable=False),
    _s("agent_id", nullable=False),
    _s("team"),
    Column("category_id", String(64)),
    Column("n_before", Integer, nullable=False),
    Column("n_after", Integer, nullable=False),
    Column("mean_before", Float),
    Column("mean_after", Float),
    Column("difference", Float),
    Column("ci_low", Float),
    Column("ci_high", Float),
    _t("measured_at", nullable=False),
    Column("day", Date, nullable=False),
    PrimaryKeyConstraint("tenant_id", "task_id"),
)
# Every published scorecard version (qa.scorecards), for shadow scoring.
scorecards = Table(
    "scorecards",
    metadata,
    tenant_id(),
    Column("scorecard_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body", JSONB, nullable=False),
    PrimaryKeyConstraint("tenant_id", "scorecard_id", "version"),
)
# Per tenant: the event time of the newest review projected, and when: the freshness of every figure.
freshness = Table(
    "freshness",
    metadata,
    tenant_id(primary_key=True),
    _t("review_time", nullable=False),
    _t("projected_at", nullable=False),
)

_DIM_TYPES: dict[str, Any] = {
    "day": Date,
    "scorecard_version": Integer,
    "csat": Integer,
    "value": Float,
    "auto_score": Float,
    "manual_score": Float,
}
# Queries filter the tenant, then view and kind, then a range of days: the key's order serves them.
_LEADING = ("view", "kind", "measure")


def _rollup(name: str, dims: tuple[str, ...], measures: tuple[str, ...]) -> Table:
    key = [d for d in _LEADING if d in dims] + [d for d in dims if d not in _LEADING]
    return Table(
        name,
        metadata,
        tenant_id(),
        *(Column(d, _DIM_TYPES.get(d, String(200)), nullable=False) for d in dims),
        *(Column(m, BigInteger if is_count(m) else Float, nullable=False) for m in measures),
        PrimaryKeyConstraint("tenant_id", *key),
    )


def is_count(measure: str) -> bool:
    return measure.startswith("n")


def _delta(name: str, dims: tuple[str, ...], measures: tuple[str, ...]) -> Table:
    """A rollup's appended differences, folded into it by compaction (deltas.py). No key and no index: a
    batch appends its rows without looking any up."""
    return Table(
        f"{name}_delta",
        metadata,
        tenant_id(),
        *(Column(d, _DIM_TYPES.get(d, String(200)), nullable=False) for d in dims),
        *(Column(m, BigInteger if is_count(m) else Float, nullable=False) for m in measures),
    )


rollups = {name: _rollup(name, dims, measures) for name, (dims, measures) in ROLLUPS.items()}
deltas = {name: _delta(name, dims, measures) for name, (dims, measures) in ROLLUPS.items()}
# What reads sum: each rollup with its deltas not yet compacted, one relation. Views, made by migration 0003
# (`view_ddl`), so they live in their own MetaData, which create_all never sees.
views = MetaData()
with_deltas = {
    name: Table(f"{name}_with_deltas", views, *(Column(c.name, c.type) for c in rollups[name].columns))
    for name in ROLLUPS
}


def view_ddl(name: str) -> str:
    cols = ", ".join(c.name for c in rollups[name].columns)
    return (
        f"CREATE OR REPLACE VIEW {with_deltas[name].name} AS "
        f"SELECT {cols} FROM {rollups[name].name} UNION ALL SELECT {cols} FROM {deltas[name].name}"
    )


# Assignments with their agent and team: their own, projected from AssignmentChanged; for the rows whose
# events all predate those fields, their conversation's, joined when read (only those rows join).
assignments_with_scope = Table(
    "assignments_with_scope", views, *(Column(c.name, c.type) for c in assignments.columns)
)
_OWN = [c.name for c in assignments.columns if c.name not in ("agent_id", "team")]
ASSIGNMENTS_VIEW_DDL = (
    "CREATE VIEW assignments_with_scope AS "
    f"SELECT {', '.join(_OWN)}, agent_id, team FROM assignments WHERE agent_id IS NOT NULL OR team IS NOT NULL "
    f"UNION ALL SELECT {', '.join('a.' + c for c in _OWN)}, c.agent_id, c.team FROM assignments a "
    "LEFT JOIN conversations c ON c.tenant_id = a.tenant_id AND c.conversation_id = a.conversation_id "
    "WHERE a.agent_id IS NULL AND a.team IS NULL"
)


tables.update(
    conversations=conversations,
    reviews=reviews,
    disputes=disputes,
    assignments=assignments,
    calibrations=calibrations,
    coaching_tasks=coaching_tasks,
    coaching_impacts=coaching_impacts,
    risk_alerts=risk_alerts,
    freshness=freshness,
    scorecards=scorecards,
    **rollups,
    **{t.name: t for t in deltas.values()},
)
# Compared table by table between a rebuild and the live schema (everything but the platform's tables).
PROJECTED = tuple(n for n in tables if n not in ("outbox", "inbox", "api_keys", "tenants"))
