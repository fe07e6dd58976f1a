"""Reviewer assignments: handed out by `next`, opened, drafted, completed, or changed with a reason (how
they are made from manual samples: assignment_intake.py).

Every change is a row in assignment_log and an AssignmentChanged on qa.assignments, in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Insert, Update, and_, func, literal, not_, select, true, update

from qastream_scoring.tables import assignment_log, assignments, conversations, reviewer_pools
from qastream_scoring.workflow.pool import ReviewerPool
from qastream_shared.auth import Principal, visible
from qastream_shared.events import (
    AssignmentAction,
    AssignmentChanged,
    Envelope,
    conversation_key,
    deterministic_id,
)
from qastream_shared.paging import page_of, paged
from qastream_shared.topics import ASSIGNMENTS
from qastream_shared.unit_of_work import UnitOfWork

SOURCE = "scoring"
OPEN, COMPLETED, REMOVED = "open", "completed", "removed"
POOL_CLAIM = "claimed from the unassigned pool"


class AssignmentConflict(Exception):
    """The assignment is not open, so it can no longer change (HTTP 409)."""


def log_change(
    uow: UnitOfWork,
    tenant_id: str,
    row: Mapping[str, Any],
    action: AssignmentAction,
    *,
    reviewer_id: str | None,
    previous: str | None,
    reason: str | None,
    by: str | None,
    at: datetime,
    event_id: str | None = None,
    cause: Envelope | None = None,
) -> dict[str, Any]:
    """Publishes the change as AssignmentChanged and returns its assignment_log row for the caller to insert
    (in batches, where a batch makes many)."""
    ev = AssignmentChanged(
        assignment_id=row["assignment_id"],
        conversation_id=row["conversation_id"],
        action=action,
        reviewer_id=reviewer_id,
        previous_reviewer_id=previous,
        plan_id=row.get("plan_id"),
        inclusion_probability=row.get("inclusion_probability"),
        reason=reason,
        by=by,
        occurred_at=at,
        agent_id=row.get("agent_id"),
        team=row.get("team"),
    )
    key = conversation_key(tenant_id, row["conversation_id"])
    eid = event_id or str(uuid.uuid4())
    env = (
        cause.caused(ev, SOURCE, key=key, id=eid)
        if cause is not None
        else Envelope(
            data=ev, source=SOURCE, tenant=tenant_id, key=key, subject=row["conversation_id"], id=eid
        )
    )
    uow.publish(ASSIGNMENTS, env)
    return {
        "tenant_id": tenant_id,
        "assignment_id": row["assignment_id"],
        "action": action.value,
        "reviewer_id": reviewer_id,
        "previous_reviewer_id": previous,
        "reason": reason,
        "by": by,
        "occurred_at": at,
    }


async def get(uow: UnitOfWork, tenant_id: str, aid: str, *, lock: bool = False) -> dict[str, Any] | None:
    q = select(assignments).where(assignments.c.tenant_id == tenant_id, assignments.c.assignment_id == aid)
    row = (await uow.session.execute(q.with_for_update() if lock else q)).mappings().first()
    return dict(row) if row else None


async def history(uow: UnitOfWork, tenant_id: str, aid: str) -> list[dict[str, Any]]:
    rows = await uow.session.execute(
        select(assignment_log)
        .where(assignment_log.c.tenant_id == tenant_id, assignment_log.c.assignment_id == aid)
        .order_by(assignment_log.c.id)
    )
    return [dict(r) for r in rows.mappings()]


async def queue_head(
    uow: UnitOfWork, tenant_id: str, reviewer_id: str
) -> tuple[ReviewerPool, dict[str, Any] | None]:
    """The tenant's reviewer pool and the reviewer's oldest open assignment (None when their queue is
    empty), in one statement."""
    head = (
        select(assignments)
        .where(
            assignments.c.tenant_id == tenant_id,
            assignments.c.reviewer_id == reviewer_id,
            assignments.c.status == OPEN,
        )
        .order_by(assignments.c.created_at, assignments.c.assignment_id)
        .limit(1)
        .lateral("head")
    )
    pool_body = select(reviewer_pools.c.body).where(reviewer_pools.c.tenant_id == tenant_id).scalar_subquery()
    one = select(literal(1).label("one")).subquery("one")
    found = (
        (
            await uow.session.execute(
                select(pool_body.label("pool_body"), head).select_from(one.outerjoin(head, true()))
            )
        )
        .mappings()
        .one()
    )
    the_pool = ReviewerPool.model_validate(found["pool_body"]) if found["pool_body"] else ReviewerPool()
    if found["assignment_id"] is None:
        return the_pool, None
    return the_pool, {c.name: found[c.name] for c in assignments.c}


async def claim(
    uow: UnitOfWork, tenant_id: str, reviewer_id: str, the_pool: ReviewerPool
) -> dict[str, Any] | None:
    """The oldest assignment of the unassigned pool the reviewer may review, now theirs: picked under
    `FOR UPDATE SKIP LOCKED` and updated in the same statement, so concurrent callers never claim the same
    row. None when there is none."""
    led = the_pool.lead_of(reviewer_id) if the_pool.skip_team_lead else None
    conditions = [
        assignments.c.tenant_id == tenant_id,
        assignments.c.reviewer_id.is_(None),
        assignments.c.status == OPEN,
        not_(assignments.c.agent_ids.any(reviewer_id)),
        not_(assignments.c.skipped_by.any(reviewer_id)),
    ]
    if led is not None:
        conditions.append(assignments.c.team.is_distinct_from(led))
    pick = (
        select(assignments.c.assignment_id)
        .where(and_(*conditions))
        .order_by(assignments.c.created_at, assignments.c.assignment_id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claimed = (
        (
            await uow.session.execute(
                update(assignments)
                .where(assignments.c.tenant_id == tenant_id, assignments.c.assignment_id == pick)
                .values(reviewer_id=reviewer_id)
                .returning(*assignments.c)
            )
        )
        .mappings()
        .first()
    )
    if claimed is None:
        return None
    row = dict(claimed)
    await uow.session.execute(
        assignment_log.insert(),
        log_change(
            uow,
            tenant_id,
            row,
            AssignmentAction.reassigned,
            reviewer_id=reviewer_id,
            previous=None,
            reason=POOL_CLAIM,
            by=reviewer_id,
            at=datetime.now(UTC),
        ),
    )
    return row


async def change(
    uow: UnitOfWork,
    tenant_id: str,
    row: Mapping[str, Any],
    action: AssignmentAction,
    *,
    reason: str,
    by: str,
    reviewer_id: str | None = None,
) -> dict[str, Any]:
    """Reassign (to `reviewer_id`), skip (back to the pool, never again to the skipper) or remove."""
    if row["status"] != OPEN:
        raise AssignmentConflict(f"assignment {row['assignment_id']} is {row['status']}, not open")
    values: dict[str, Any] = {}
    if action is AssignmentAction.reassigned:
        values = {"reviewer_id": reviewer_id, "opened_at": None}
    elif action is AssignmentAction.skipped:
        values = {"reviewer_id": None, "opened_at": None}
        if row["reviewer_id"] is not None:
            values["skipped_by"] = func.array_append(assignments.c.skipped_by, row["reviewer_id"])
    elif action is AssignmentAction.removed:
        values = {"status": REMOVED}
    await uow.session.execute(
        update(assignments).where(assignments.c.assignment_id == row["assignment_id"]).values(**values)
    )
    new_reviewer = reviewer_id if action is AssignmentAction.reassigned else None
    await uow.session.execute(
        assignment_log.insert(),
        log_change(
            uow,
            tenant_id,
            row,
            action,
            reviewer_id=new_reviewer if action is not AssignmentAction.removed else row["reviewer_id"],
            previous=row["reviewer_id"],
            reason=reason,
            by=by,
            at=datetime.now(UTC),
        ),
    )
    updated = await get(uow, tenant_id, row["assignment_id"])
    assert updated is not None
    return updated


async def mark_opened(uow: UnitOfWork, row: dict[str, Any]) -> None:
    if row["opened_at"] is None:
        row["opened_at"] = datetime.now(UTC)
        await uow.session.execute(
            update(assignments)
            .where(assignments.c.assignment_id == row["assignment_id"], assignments.c.opened_at.is_(None))
            .values(opened_at=row["opened_at"])
        )


async def save_draft(uow: UnitOfWork, row: Mapping[str, Any], draft: dict[str, Any]) -> datetime | None:
    """Stores the draft if the assignment is still open and still `row`'s reviewer's: one statement that
    checks both, so it needs no lock. None when it no longer is (the caller read it before)."""
    at = datetime.now(UTC)
    saved = await uow.session.execute(
        update(assignments)
        .where(
            assignments.c.tenant_id == row["tenant_id"],
            assignments.c.assignment_id == row["assignment_id"],
            assignments.c.status == OPEN,
            assignments.c.reviewer_id == row["reviewer_id"],
        )
        .values(draft=draft, draft_saved_at=at, opened_at=func.coalesce(assignments.c.opened_at, at))
        .returning(assignments.c.draft_saved_at)
    )
    return saved.scalar_one_or_none()


def completion(
    uow: UnitOfWork, tenant_id: str, row: Mapping[str, Any], review_id: str, at: datetime
) -> tuple[Update, Insert]:
    """The statements that complete `row` with its review and log it (for the caller to run, e.g. as CTEs of
    one statement with the review's own); publishes AssignmentChanged (completed)."""
    done = (
        update(assignments)
        .where(assignments.c.assignment_id == row["assignment_id"])
        .values(status=COMPLETED, review_id=review_id)
    )
    logged = assignment_log.insert().values(
        log_change(
            uow,
            tenant_id,
            row,
            AssignmentAction.completed,
            reviewer_id=row["reviewer_id"],
            previous=None,
            reason=None,
            by=row["reviewer_id"],
            at=at,
            event_id=deterministic_id(row["assignment_id"], "completed"),
        )
    )
    return done, logged


def view(row: Any) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("draft", "period_day")}
    for k in ("created_at", "opened_at", "draft_saved_at"):
        out[k] = row[k].isoformat() if row[k] is not None else None
    return out


async def page(
    uow: UnitOfWork,
    principal: Principal,
    status: str | None,
    reviewer_id: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """Oldest first: reviewers their own, team leads their team's, leads and admins the tenant's."""
    q = select(assignments).where(visible(assignments, principal, reviewer="reviewer_id"))
    if status is not None:
        q = q.where(assignments.c.status == status)
    if reviewer_id is not None:
        q = q.where(assignments.c.reviewer_id == reviewer_id)
    q = paged(q, [assignments.c.created_at, assignments.c.assignment_id], cursor, limit)
    rows = [dict(r) for r in (await uow.session.execute(q)).mappings()]
    items, nxt = page_of(rows, ["created_at", "assignment_id"], limit)
    return [view(r) for r in items], nxt


async def transcript(uow: UnitOfWork, tenant_id: str, conversation_id: str) -> dict[str, Any] | None:
    """The stored (already redacted) conversation."""
    body = (
        await uow.session.execute(
            select(conversations.c.body).where(
                conversations.c.tenant_id == tenant_id, conversations.c.conversation_id == conversation_id
            )
        )
    ).scalar_one_or_none()
    return orjson.loads(body) if body is not None else None
