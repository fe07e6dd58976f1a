"""Workflow facts (disputes, assignments, calibrations, coaching tasks and impact, scorecards) projected as
each entity's latest state: later events of one entity win, and columns only an earlier event knows are kept.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_reporting.facts import day_of, utc
from qastream_reporting.tables import (
    assignments,
    calibrations,
    coaching_impacts,
    coaching_tasks,
    disputes,
    risk_alerts,
    scorecards,
)
from qastream_shared.db import array_insert, array_params, columns_of, on_conflict_update
from qastream_shared.events import (
    AssignmentChanged,
    CalibrationClosed,
    CalibrationOpened,
    CoachingImpactMeasured,
    CoachingTaskEvent,
    DisputeOpened,
    DisputeResolved,
    Envelope,
    RiskAlertRaised,
    ScorecardPublished,
)


async def project_workflow(session: AsyncSession, events: Sequence[Envelope]) -> set[str]:
    # Later events of one entity win; keyed topics keep one entity's events in order.
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    changed: set[str] = set()
    for env in events:
        data = env.data
        tenant = env.tenant
        if isinstance(data, DisputeOpened):
            row = latest.get(("disputes", tenant, data.dispute_id)) or {}
            latest[("disputes", tenant, data.dispute_id)] = {
                "outcome": None,
                "resolved_by": None,
                "resolved_at": None,
                **row,
                **_dispute(tenant, data),
                "opened_by": data.opened_by,
                "opened_at": utc(data.opened_at),
                "day": day_of(data.opened_at),
            }
        elif isinstance(data, DisputeResolved):
            row = latest.get(("disputes", tenant, data.dispute_id)) or {
                "opened_by": None,
                "opened_at": None,
                "day": day_of(data.resolved_at),
            }
            latest[("disputes", tenant, data.dispute_id)] = {
                **row,
                **_dispute(tenant, data),
                "outcome": data.outcome.value,
                "resolved_by": data.resolved_by,
                "resolved_at": utc(data.resolved_at),
            }
        elif isinstance(data, AssignmentChanged):
            row = latest.get(("assignments", tenant, data.assignment_id)) or {
                "created_at": utc(data.occurred_at),
                "day": day_of(data.occurred_at),
                "inclusion_probability": None,
                "reviewer_id": None,
                "agent_id": None,
                "team": None,
            }
            latest[("assignments", tenant, data.assignment_id)] = {
                **row,
                "tenant_id": tenant,
                "assignment_id": data.assignment_id,
                "conversation_id": data.conversation_id,
                "reviewer_id": data.reviewer_id or row["reviewer_id"],
                "action": data.action.value,
                "inclusion_probability": data.inclusion_probability or row["inclusion_probability"],
                "changed_at": utc(data.occurred_at),
                "agent_id": data.agent_id or row["agent_id"],
                "team": data.team or row["team"],
            }
        elif isinstance(data, CalibrationOpened | CalibrationClosed):
            row = latest.get(("calibrations", tenant, data.session_id)) or {"opened_at": None}
            latest[("calibrations", tenant, data.session_id)] = {
                **row,
                "tenant_id": tenant,
                "session_id": data.session_id,
                "scorecard_id": data.scorecard_id,
                "scorecard_version": data.scorecard_version,
                "conversations": len(data.conversation_ids),
                "participants": len(data.participants),
                "opened_at": utc(data.opened_at) if isinstance(data, CalibrationOpened) else row["opened_at"],
                "closed_at": utc(data.closed_at) if isinstance(data, CalibrationClosed) else None,
                "day": day_of(data.closed_at if isinstance(data, CalibrationClosed) else data.opened_at),
                "alpha": data.alpha if isinstance(data, CalibrationClosed) else None,
                "alpha_by_category": (
                    orjson.dumps(data.alpha_by_category).decode()
                    if isinstance(data, CalibrationClosed)
                    else None
                ),
                "agent_id": None,
                "team": None,
            }
        elif isinstance(data, CoachingTaskEvent):
            row = latest.get(("coaching_tasks", tenant, data.task_id)) or {
                "created_at": utc(data.occurred_at),
                "day": day_of(data.occurred_at),
            }
            latest[("coaching_tasks", tenant, data.task_id)] = {
                **row,
                "tenant_id": tenant,
                "task_id": data.task_id,
                "rule_id": data.rule_id,
                "agent_id": data.agent_id,
                "team": data.team,
                "category_id": data.category_id,
                "status": data.status.value,
                "updated_at": utc(data.occurred_at),
            }
        elif isinstance(data, CoachingImpactMeasured):
            latest[("coaching_impacts", tenant, data.task_id)] = {
                "tenant_id": tenant,
                **data.model_dump(
                    include={
                        "task_id",
                        "rule_id",
                        "agent_id",
                        "team",
                        "category_id",
                        "n_before",
                        "n_after",
                        "mean_before",
                        "mean_after",
                        "difference",
                        "ci_low",
                        "ci_high",
                    }
                ),
                "measured_at": utc(data.measured_at),
                "day": day_of(data.measured_at),
            }
        elif isinstance(data, ScorecardPublished):
            card = data.scorecard
            latest[("scorecards", tenant, f"{card.scorecard_id}:{card.version}")] = {
                "tenant_id": tenant,
                "scorecard_id": card.scorecard_id,
                "version": card.version,
                "body": card.model_dump_json(),
            }
        elif isinstance(data, RiskAlertRaised):
            latest[("risk_alerts", tenant, data.alert_id)] = {
                "tenant_id": tenant,
                "alert_id": data.alert_id,
                "review_id": data.review_id,
                "conversation_id": data.conversation_id,
                "agent_id": data.agent_id,
                "team": data.team,
                "rule_id": data.rule_id,
                "categories": len(data.category_ids),
                "reason": data.reason,
                "raised_at": utc(data.raised_at),
                "day": day_of(data.raised_at),
            }
        else:
            continue
        changed.add(tenant)
    by_table: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (table, _, _), row in latest.items():
        by_table[table].append(row)
    for name, rows in by_table.items():
        await _upsert_workflow(session, name, rows)
    return changed


def _dispute(tenant: str, data: DisputeOpened | DisputeResolved) -> dict[str, Any]:
    """The columns both of a dispute's events carry."""
    return {
        "tenant_id": tenant,
        **data.model_dump(
            include={"dispute_id", "review_id", "conversation_id", "category_id", "agent_id", "team"}
        ),
    }


_WORKFLOW = {
    "disputes": disputes,
    "assignments": assignments,
    "calibrations": calibrations,
    "coaching_tasks": coaching_tasks,
    "coaching_impacts": coaching_impacts,
    "scorecards": scorecards,
    "risk_alerts": risk_alerts,
}
# A later event replaces a row's columns, except those an earlier event alone knows.
_KEEP_FIRST = {
    "disputes": ("opened_by", "opened_at", "day"),
    "assignments": ("created_at", "day", "reviewer_id", "inclusion_probability", "agent_id", "team"),
    "calibrations": ("opened_at",),
    "coaching_tasks": ("created_at", "day"),
}


@functools.cache
def _statement(name: str) -> TextClause:
    table = _WORKFLOW[name]
    cols = columns_of(table)
    return array_insert(
        table, cols, suffix=on_conflict_update(table, _key(name), cols, keep=_KEEP_FIRST.get(name, ()))
    )


def _key(name: str) -> list[str]:
    return [c.name for c in _WORKFLOW[name].primary_key.columns]


async def _upsert_workflow(session: AsyncSession, name: str, rows: list[dict[str, Any]]) -> None:
    pk = _key(name)
    rows.sort(key=lambda r: tuple(r[c] for c in pk))
    await session.execute(_statement(name), array_params(columns_of(_WORKFLOW[name]), rows))
