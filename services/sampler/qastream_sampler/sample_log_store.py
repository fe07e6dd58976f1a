"""Reads of the sample log (every decision the sampler took), as the API serves them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_sampler.tables import sample_log
from qastream_shared.auth import Principal, visible


async def latest_decisions(
    session: AsyncSession,
    principal: Principal,
    *,
    conversation_id: str | None,
    plan_id: str | None,
    purpose: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The principal's visible decisions, newest first, narrowed by whichever filters are given."""
    q = (
        select(sample_log)
        .where(visible(sample_log, principal))
        .order_by(sample_log.c.decided_at.desc())
        .limit(limit)
    )
    if conversation_id is not None:
        q = q.where(sample_log.c.conversation_id == conversation_id)
    if plan_id is not None:
        q = q.where(sample_log.c.plan_id == plan_id)
    if purpose is not None:
        q = q.where(sample_log.c.purpose == purpose)
    return [dict(r) for r in (await session.execute(q)).mappings()]
