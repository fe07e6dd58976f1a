"""SQL of webhooks: subscriptions, deliveries (the queue the delivery loop drains) and the attempt log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_coaching.tables import attempts, deliveries, webhooks
from qastream_shared.paging import page_of, paged


async def enqueue(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(pg_insert(deliveries).values(rows).on_conflict_do_nothing())


async def claim(
    session: AsyncSession, limit: int, room: dict[str, int], default_room: int, lease_s: float
) -> list[dict[str, Any]]:
    """Due deliveries, at most `room[webhook]` (else `default_room`) per webhook, leased for `lease_s`.

    SKIP LOCKED lets replicas drain the same table; the lease (a later next_attempt_at) keeps a delivery in
    flight from being claimed again, and hands it back if this process dies mid-request.
    """
    candidates = (
        await session.execute(
            select(deliveries.c.delivery_id, deliveries.c.webhook_id)
            .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= func.now())
            .order_by(deliveries.c.next_attempt_at)
            .limit(limit * 4)
            .with_for_update(skip_locked=True)
        )
    ).all()
    picked: list[str] = []
    left = dict(room)
    for did, wid in candidates:
        if len(picked) >= limit:
            break
        if left.setdefault(wid, default_room) > 0:
            left[wid] -= 1
            picked.append(did)
    if not picked:
        return []
    await session.execute(
        update(deliveries)
        .where(deliveries.c.delivery_id.in_(picked))
        .values(next_attempt_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s))
    )
    rows = await session.execute(
        select(deliveries, webhooks.c.url, webhooks.c.secret, webhooks.c.active)
        .outerjoin(webhooks, webhooks.c.webhook_id == deliveries.c.webhook_id)
        .where(deliveries.c.delivery_id.in_(picked))
    )
    return [dict(r) for r in rows.mappings()]


async def record_attempt(
    session: AsyncSession,
    delivery: dict[str, Any],
    *,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    outcome: str,
    retry_at: datetime | None,
) -> None:
    """Logs one attempt and moves the delivery on: delivered, dead, or pending until `retry_at`."""
    attempt = delivery["attempts"] + 1
    await session.execute(
        attempts.insert().values(
            tenant_id=delivery["tenant_id"],
            delivery_id=delivery["delivery_id"],
            attempt=attempt,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
        )
    )
    values: dict[str, Any] = {"attempts": attempt, "status": outcome, "last_error": error}
    if outcome == "delivered":
        values["delivered_at"] = func.now()
    if retry_at is not None:
        values["next_attempt_at"] = retry_at
    await session.execute(
        update(deliveries).where(deliveries.c.delivery_id == delivery["delivery_id"]).values(**values)
    )


async def replay(
    session: AsyncSession,
    tenant_id: str,
    *,
    delivery_ids: Sequence[str] | None,
    webhook_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[str]:
    """Puts deliveries (by id, or created in a time range) back in the queue for a fresh round of attempts."""
    conds = [deliveries.c.tenant_id == tenant_id]
    if delivery_ids is not None:
        conds.append(deliveries.c.delivery_id.in_(list(delivery_ids)))
    if webhook_id is not None:
        conds.append(deliveries.c.webhook_id == webhook_id)
    if since is not None:
        conds.append(deliveries.c.created_at >= since)
    if until is not None:
        conds.append(deliveries.c.created_at < until)
    result = await session.execute(
        update(deliveries)
        .where(and_(*conds))
        .values(status="pending", attempts=0, next_attempt_at=func.now(), delivered_at=None)
        .returning(deliveries.c.delivery_id)
    )
    return sorted(result.scalars().all())


async def attempts_of(
    session: AsyncSession, tenant_id: str, delivery_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    if not delivery_ids:
        return {}
    rows = await session.execute(
        select(attempts)
        .where(attempts.c.tenant_id == tenant_id, attempts.c.delivery_id.in_(list(delivery_ids)))
        .order_by(attempts.c.id)
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows.mappings():
        out.setdefault(r["delivery_id"], []).append(
            {
                "attempt": r["attempt"],
                "at": r["at"].isoformat(),
                "status_code": r["status_code"],
                "error": r["error"],
                "duration_ms": round(r["duration_ms"], 1),
            }
        )
    return out


# --- subscriptions ---


async def subscriptions(
    session: AsyncSession, tenants: Sequence[str]
) -> dict[str, list[tuple[str, frozenset[str]]]]:
    """tenant → its active webhooks and the event types each subscribes to."""
    rows = await session.execute(
        select(webhooks.c.tenant_id, webhooks.c.webhook_id, webhooks.c.event_types).where(
            webhooks.c.tenant_id.in_(list(tenants)), webhooks.c.active
        )
    )
    out: dict[str, list[tuple[str, frozenset[str]]]] = {}
    for tenant, wid, types in rows:
        out.setdefault(tenant, []).append((wid, frozenset(types)))
    return out


async def create(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(webhooks.insert().values(**row))


async def get(session: AsyncSession, tenant_id: str, webhook_id: str) -> dict[str, Any] | None:
    row = (
        (
            await session.execute(
                select(webhooks).where(webhooks.c.tenant_id == tenant_id, webhooks.c.webhook_id == webhook_id)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def page(
    session: AsyncSession, tenant_id: str, cursor: str | None, limit: int
) -> tuple[list[Any], str | None]:
    q = select(webhooks).where(webhooks.c.tenant_id == tenant_id)
    rows = (
        (await session.execute(paged(q, [webhooks.c.created_at, webhooks.c.webhook_id], cursor, limit)))
        .mappings()
        .all()
    )
    return page_of(rows, ["created_at", "webhook_id"], limit)


async def change(session: AsyncSession, tenant_id: str, webhook_id: str, **values: Any) -> None:
    await session.execute(
        update(webhooks)
        .where(webhooks.c.tenant_id == tenant_id, webhooks.c.webhook_id == webhook_id)
        .values(**values)
    )


async def delete(session: AsyncSession, tenant_id: str, webhook_id: str) -> bool:
    done = await session.execute(
        webhooks.delete()
        .where(webhooks.c.tenant_id == tenant_id, webhooks.c.webhook_id == webhook_id)
        .returning(webhooks.c.webhook_id)
    )
    return done.first() is not None


async def delivery_page(
    session: AsyncSession,
    tenant_id: str,
    *,
    webhook_id: str | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Any], str | None]:
    cols = [c for c in deliveries.c if c.name != "body"]
    q = select(*cols).where(deliveries.c.tenant_id == tenant_id)
    if webhook_id is not None:
        q = q.where(deliveries.c.webhook_id == webhook_id)
    if status is not None:
        q = q.where(deliveries.c.status == status)
    rows = (
        (
            await session.execute(
                paged(
                    q, [deliveries.c.created_at, deliveries.c.delivery_id], cursor, limit, newest_first=True
                )
            )
        )
        .mappings()
        .all()
    )
    return page_of(rows, ["created_at", "delivery_id"], limit)
