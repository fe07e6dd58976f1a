"""The shape of what coaching publishes: task events carrying the task's state, keyed by tenant and agent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from qastream_shared.events import CoachingImpactMeasured, CoachingTaskEvent, CoachingTaskStatus, Envelope

SOURCE = "coaching"


def utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def key_of(tenant_id: str, agent_id: str) -> str:
    return f"{tenant_id}:{agent_id}"


def task_event(
    cls: type[CoachingTaskEvent], row: dict[str, Any], review_ids: list[str], **extra: Any
) -> CoachingTaskEvent:
    return cls(
        task_id=row["task_id"],
        rule_id=row["rule_id"],
        rule_version=row["rule_version"],
        agent_id=row["agent_id"],
        team=row["team"],
        assignee_id=row["assignee_id"],
        category_id=row["category_id"],
        review_ids=review_ids,
        status=CoachingTaskStatus(row["status"]),
        due_at=row["due_at"],
        occurred_at=extra.pop("occurred_at", None) or datetime.now(UTC),
        **extra,
    )


def envelope(
    tenant_id: str,
    row: dict[str, Any],
    data: CoachingTaskEvent | CoachingImpactMeasured,
    event_id: str | None = None,
) -> Envelope:
    return Envelope(
        data=data,
        source=SOURCE,
        tenant=tenant_id,
        key=key_of(tenant_id, row["agent_id"]),
        subject=row["task_id"],
        id=event_id or str(uuid.uuid4()),
    )
