"""Coaching's SQL for the task lifecycle: tasks, their evidence, team leads as assignees, and risk alerts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson
from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_coaching.tables import alerts, evidence, evidence_writes, tasks
from qastream_shared.db import array_insert, array_params

OPEN = ("open", "acknowledged")
_TASK_COLUMNS = (
    "task_id", "tenant_id", "slot", "rule_id", "rule_version", "agent_id", "team", "assignee_id", "category_id",
    "title", "status", "needs_confirmation", "opened_at", "due_at", "impact_reviews", "generation",
)  # fmt: skip
_INSERT_TASKS = array_insert(
    tasks, _TASK_COLUMNS, suffix="ON CONFLICT DO NOTHING RETURNING task_id, evidence_seq"
)
_EVIDENCE_COLUMNS = (
    "tenant_id", "task_id", "review_id", "conversation_id", "rule_id", "rule_version", "reason", "at", "kind",
    "quotes",
)  # fmt: skip
_INSERT_EVIDENCE = array_insert(
    evidence, _EVIDENCE_COLUMNS, suffix="ON CONFLICT DO NOTHING RETURNING task_id, review_id"
)
_ALERT_COLUMNS = ("alert_id", "tenant_id", "review_id", "agent_id", "team", "rule_id", "reason", "raised_at")
_INSERT_ALERTS = array_insert(alerts, _ALERT_COLUMNS, suffix="ON CONFLICT DO NOTHING RETURNING alert_id")


async def open_tasks(
    session: AsyncSession, tenant_id: str, slots: Iterable[str]
) -> dict[str, dict[str, Any]]:
    wanted = sorted(set(slots))
    if not wanted:
        return {}
    rows = await session.execute(
        select(tasks)
        .where(tasks.c.tenant_id == tenant_id, tasks.c.slot.in_(wanted), tasks.c.status.in_(OPEN))
        .with_for_update()
    )
    return {r["slot"]: dict(r) for r in rows.mappings()}


class SlotTasks(NamedTuple):
    open: dict[str, dict[str, Any]]  # slot → its open task
    closed: dict[str, int]  # slot → how many tasks it has closed, the withdrawn left out
    withdrawn: dict[str, dict[str, Any]]  # task id → a task of these slots dismissed as withdrawn


async def slot_tasks(session: AsyncSession, tenant_id: str, slots: Iterable[str]) -> SlotTasks:
    """The tasks of these slots (locked), in one read."""
    found = SlotTasks({}, {}, {})
    wanted = sorted(set(slots))
    if not wanted:
        return found
    rows = await session.execute(
        select(tasks).where(tasks.c.tenant_id == tenant_id, tasks.c.slot.in_(wanted)).with_for_update()
    )
    for r in rows.mappings():
        if r["status"] in OPEN:
            found.open[r["slot"]] = dict(r)
        elif r["withdrawn"]:
            found.withdrawn[r["task_id"]] = dict(r)
        else:
            found.closed[r["slot"]] = found.closed.get(r["slot"], 0) + 1
    return found


async def delete_tasks(session: AsyncSession, tenant_id: str, task_ids: Iterable[str]) -> None:
    """Deletes these tasks and their evidence (a withdrawn task whose id the slot's next task takes up)."""
    ids = sorted(set(task_ids))
    if not ids:
        return
    await session.execute(
        evidence.delete().where(evidence.c.tenant_id == tenant_id, evidence.c.task_id.in_(ids))
    )
    await session.execute(tasks.delete().where(tasks.c.tenant_id == tenant_id, tasks.c.task_id.in_(ids)))


async def insert_tasks(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Inserts new tasks; returns the ids inserted (a concurrent batch may have taken a slot first) → their
    evidence_seq."""
    if not rows:
        return {}
    result = await session.execute(_INSERT_TASKS, array_params(_TASK_COLUMNS, rows))
    return dict(result.tuples().all())


async def add_evidence(session: AsyncSession, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Adds evidence rows; returns the (task, review) pairs that were new."""
    if not rows:
        return set()
    params = array_params(_EVIDENCE_COLUMNS, rows)
    params["quotes"] = [orjson.dumps(q).decode() for q in params["quotes"]]
    result = await session.execute(_INSERT_EVIDENCE, params)
    return {(t, r) for t, r in result}


async def evidence_ids(
    session: AsyncSession, tenant_id: str, task_ids: Iterable[str]
) -> dict[str, list[str]]:
    ids = sorted(set(task_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(evidence.c.task_id, evidence.c.review_id)
        .where(evidence.c.tenant_id == tenant_id, evidence.c.task_id.in_(ids))
        .order_by(evidence.c.task_id, evidence.c.at, evidence.c.review_id)
    )
    out: dict[str, list[str]] = {}
    for t, r in rows:
        out.setdefault(t, []).append(r)
    return out


async def evidence_of(session: AsyncSession, tenant_id: str, task_id: str) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(evidence)
        .where(evidence.c.tenant_id == tenant_id, evidence.c.task_id == task_id)
        .order_by(evidence.c.at, evidence.c.review_id)
    )
    return [dict(r) for r in rows.mappings()]


async def task(
    session: AsyncSession, tenant_id: str, task_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    q = select(tasks).where(tasks.c.tenant_id == tenant_id, tasks.c.task_id == task_id)
    row = (await session.execute(q.with_for_update() if lock else q)).mappings().first()
    return dict(row) if row else None


async def tasks_by_id(
    session: AsyncSession, tenant_id: str, task_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    ids = sorted(set(task_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(tasks).where(tasks.c.tenant_id == tenant_id, tasks.c.task_id.in_(ids))
    )
    return {r["task_id"]: dict(r) for r in rows.mappings()}


async def update_task(session: AsyncSession, tenant_id: str, task_id: str, **values: Any) -> None:
    await session.execute(
        update(tasks)
        .where(tasks.c.tenant_id == tenant_id, tasks.c.task_id == task_id)
        .values(updated_at=func.now(), **values)
    )


async def completed_tasks(
    session: AsyncSession, tenant_id: str, agents: Iterable[str]
) -> list[dict[str, Any]]:
    """Completed tasks of these agents whose impact still waits for reviews after completion."""
    rows = await session.execute(
        select(tasks).where(
            tasks.c.tenant_id == tenant_id,
            tasks.c.agent_id.in_(sorted(set(agents))),
            tasks.c.status == "completed",
            func.coalesce(tasks.c.impact["n_after"].as_integer(), 0) < tasks.c.impact_reviews,
        )
    )
    return [dict(r) for r in rows.mappings()]


async def team_leads(
    session: AsyncSession, api_keys: Any, tenant_id: str, teams: Iterable[str | None]
) -> dict[str, str]:
    """team → its lead: the agent id of the team's lead key (role team_lead), the lowest if several."""
    wanted = sorted({t for t in teams if t})
    if not wanted:
        return {}
    rows = await session.execute(
        select(api_keys.c.team, func.min(api_keys.c.agent_id))
        .where(
            api_keys.c.tenant_id == tenant_id,
            api_keys.c.role == "team_lead",
            api_keys.c.team.in_(wanted),
            api_keys.c.agent_id.is_not(None),
            api_keys.c.revoked_at.is_(None),
        )
        .group_by(api_keys.c.team)
    )
    return dict(rows.tuples().all())


async def insert_alerts(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    if not rows:
        return set()
    result = await session.execute(_INSERT_ALERTS, array_params(_ALERT_COLUMNS, rows))
    return set(result.scalars().all())


_REOPEN = ("rule_id", "rule_version", "title", "opened_at", "due_at", "impact_reviews")


async def reopen_tasks(session: AsyncSession, tenant_id: str, rows: list[dict[str, Any]]) -> None:
    """Stores what an earlier firing now decides about these open tasks (`_REOPEN`)."""
    if not rows:
        return
    await session.execute(
        update(tasks)
        .where(tasks.c.tenant_id == tenant_id, tasks.c.task_id == bindparam("b_task_id"))
        .values(updated_at=func.now(), **{c: bindparam(f"b_{c}") for c in _REOPEN}),
        [{f"b_{c}": r[c] for c in ("task_id", *_REOPEN)} for r in rows],
    )


async def open_evidence(
    session: AsyncSession, tenant_id: str, *, slots: Iterable[str], agents: Iterable[str]
) -> dict[str, tuple[dict[str, Any], list[str]]]:
    """slot → (its open task, that task's evidence review ids), for the open tasks of these slots and of these
    agents (locked)."""
    by_slot, by_agent = sorted(set(slots)), sorted(set(agents))
    if not by_slot and not by_agent:
        return {}
    rows = await session.execute(
        select(tasks, evidence.c.review_id.label("evidence_review_id"))
        .outerjoin(
            evidence, and_(evidence.c.tenant_id == tasks.c.tenant_id, evidence.c.task_id == tasks.c.task_id)
        )
        .where(
            tasks.c.tenant_id == tenant_id,
            or_(tasks.c.slot.in_(by_slot), tasks.c.agent_id.in_(by_agent)),
            tasks.c.status.in_(OPEN),
        )
        .with_for_update(of=tasks)
    )
    out: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for r in rows.mappings():
        ids = out.setdefault(r["slot"], ({c: r[c] for c in tasks.c.keys()}, []))[1]
        if r["evidence_review_id"] is not None:
            ids.append(r["evidence_review_id"])
    return out


async def remove_evidence(session: AsyncSession, tenant_id: str, pairs: dict[str, list[str]]) -> None:
    """Deletes these evidence rows (task id → review ids); each task gets a fresh evidence_seq."""
    for task_id, review_ids in sorted(pairs.items()):
        await session.execute(
            evidence.delete().where(
                evidence.c.tenant_id == tenant_id,
                evidence.c.task_id == task_id,
                evidence.c.review_id.in_(sorted(review_ids)),
            )
        )
    await session.execute(
        update(tasks)
        .where(tasks.c.tenant_id == tenant_id, tasks.c.task_id.in_(sorted(pairs)))
        .values(evidence_seq=evidence_writes.next_value())
    )
