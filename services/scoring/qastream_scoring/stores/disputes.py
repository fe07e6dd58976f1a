"""Disputes of a review or one of its categories, and their resolution; events on qa.disputes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from qastream_scoring.tables import disputes
from qastream_scoring.workflow.disputes import OPEN
from qastream_shared.auth import Principal, visible
from qastream_shared.events import (
    DisputeOpened,
    DisputeOutcome,
    DisputeResolved,
    Envelope,
    conversation_key,
    deterministic_id,
)
from qastream_shared.paging import page_of, paged
from qastream_shared.topics import DISPUTES
from qastream_shared.unit_of_work import UnitOfWork

SOURCE = "scoring"


def view(row: Any) -> dict[str, Any]:
    out = dict(row)
    for k in ("opened_at", "resolved_at"):
        out[k] = row[k].isoformat() if row[k] is not None else None
    return out


async def open_dispute(
    uow: UnitOfWork, tenant_id: str, review: Mapping[str, Any], category_id: str | None, reason: str, by: str
) -> dict[str, Any] | None:
    """The new dispute, or None when one is already open on this review and category."""
    now = datetime.now(UTC)
    row = {
        "dispute_id": str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "review_id": review["review_id"],
        "conversation_id": review["conversation_id"],
        "category_id": category_id,
        "agent_id": review["agent_id"],
        "team": review["team"],
        "reviewer_id": review["reviewer_id"],
        "opened_by": by,
        "reason": reason,
        "status": OPEN,
        "opened_at": now,
    }
    inserted = (
        await uow.session.execute(
            pg_insert(disputes).values(**row).on_conflict_do_nothing().returning(disputes.c.dispute_id)
        )
    ).first()
    if inserted is None:
        return None
    ev = DisputeOpened(
        dispute_id=row["dispute_id"],
        review_id=row["review_id"],
        conversation_id=row["conversation_id"],
        category_id=category_id,
        agent_id=row["agent_id"],
        team=row["team"],
        opened_by=by,
        reason=reason,
        opened_at=now,
    )
    uow.publish(
        DISPUTES,
        Envelope(
            data=ev,
            source=SOURCE,
            tenant=tenant_id,
            key=conversation_key(tenant_id, ev.conversation_id),
            subject=ev.conversation_id,
            id=row["dispute_id"],
        ),
    )
    found = await get(uow, tenant_id, row["dispute_id"])
    assert found is not None
    return found


async def get(
    uow: UnitOfWork, tenant_id: str, dispute_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    q = select(disputes).where(disputes.c.tenant_id == tenant_id, disputes.c.dispute_id == dispute_id)
    row = (await uow.session.execute(q.with_for_update() if lock else q)).mappings().first()
    return dict(row) if row else None


async def of_review(uow: UnitOfWork, tenant_id: str, review_id: str) -> list[dict[str, Any]]:
    rows = await uow.session.execute(
        select(disputes)
        .where(disputes.c.tenant_id == tenant_id, disputes.c.review_id == review_id)
        .order_by(disputes.c.opened_at, disputes.c.dispute_id)
    )
    return [view(r) for r in rows.mappings()]


async def page(
    uow: UnitOfWork, principal: Principal, status: str | None, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first: agents their own, team leads their team's, reviewers those on reviews they wrote."""
    q = select(disputes).where(visible(disputes, principal, reviewer="reviewer_id"))
    if status is not None:
        q = q.where(disputes.c.status == status)
    q = paged(q, [disputes.c.opened_at, disputes.c.dispute_id], cursor, limit, newest_first=True)
    rows = [dict(r) for r in (await uow.session.execute(q)).mappings()]
    items, nxt = page_of(rows, ["opened_at", "dispute_id"], limit)
    return [view(r) for r in items], nxt


async def resolve(
    uow: UnitOfWork,
    tenant_id: str,
    row: Mapping[str, Any],
    outcome: DisputeOutcome,
    *,
    by: str,
    comment: str | None,
    revision: int | None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    await uow.session.execute(
        update(disputes)
        .where(disputes.c.dispute_id == row["dispute_id"])
        .values(status=outcome.value, resolved_by=by, comment=comment, revision=revision, resolved_at=now)
    )
    ev = DisputeResolved(
        dispute_id=row["dispute_id"],
        review_id=row["review_id"],
        conversation_id=row["conversation_id"],
        category_id=row["category_id"],
        agent_id=row["agent_id"],
        team=row["team"],
        outcome=outcome,
        resolved_by=by,
        comment=comment,
        revision=revision,
        resolved_at=now,
    )
    uow.publish(
        DISPUTES,
        Envelope(
            data=ev,
            source=SOURCE,
            tenant=tenant_id,
            key=conversation_key(tenant_id, ev.conversation_id),
            subject=ev.conversation_id,
            id=deterministic_id(row["dispute_id"], "resolved"),
        ),
    )
    found = await get(uow, tenant_id, row["dispute_id"])
    assert found is not None
    return found
