"""The API's reads: tasks, impact and alerts through the one visibility rule, with cursor paging."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_coaching.tables import alerts, rules, tasks
from qastream_shared.auth import Principal, visible
from qastream_shared.events import Role
from qastream_shared.paging import page_of, paged


async def task_page(
    session: AsyncSession,
    principal: Principal,
    filters: dict[str, Any],
    cursor: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    q = select(tasks).where(visible(tasks, principal))
    if principal.role is Role.agent:  # a task waiting for a lead's confirmation is not the agent's yet
        q = q.where(tasks.c.needs_confirmation.is_(False))
    for name in ("agent_id", "team", "status", "category_id", "rule_id", "assignee_id"):
        if filters.get(name) is not None:
            q = q.where(tasks.c[name] == filters[name])
    if filters.get("due_before") is not None:
        q = q.where(tasks.c.due_at < filters["due_before"])
    if filters.get("due_after") is not None:
        q = q.where(tasks.c.due_at >= filters["due_after"])
    rows = (
        (await session.execute(paged(q, [tasks.c.opened_at, tasks.c.task_id], cursor, limit)))
        .mappings()
        .all()
    )
    return page_of(rows, ["opened_at", "task_id"], limit)


async def completed_impacts(session: AsyncSession, principal: Principal) -> list[dict[str, Any]]:
    q = select(tasks.c.task_id, tasks.c.rule_id, tasks.c.assignee_id, tasks.c.team, tasks.c.impact).where(
        visible(tasks, principal), tasks.c.status == "completed", tasks.c.impact.is_not(None)
    )
    return [dict(r) for r in (await session.execute(q)).mappings()]


async def alert_page(
    session: AsyncSession, principal: Principal, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    q = select(alerts).where(visible(alerts, principal))
    rows = (
        (
            await session.execute(
                paged(q, [alerts.c.raised_at, alerts.c.alert_id], cursor, limit, newest_first=True)
            )
        )
        .mappings()
        .all()
    )
    return page_of(rows, ["raised_at", "alert_id"], limit)


async def rule_ids(session: AsyncSession, tenant_id: str) -> set[str]:
    rows = await session.execute(select(rules.c.rule_id).where(rules.c.tenant_id == tenant_id).distinct())
    return set(rows.scalars().all())
