"""Assignments made from manual samples: the tenant's reviewer pool and the split (workflow/pool.py) applied
to a consumed batch, with quotas counted from what is stored."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from qastream_scoring.stores.assignments import OPEN, log_change
from qastream_scoring.tables import assignment_log, assignments, reviewer_pools
from qastream_scoring.workflow.pool import Load, ReviewerPool, choose, period_day, preference, week_start
from qastream_shared.events import AssignmentAction, ConversationSampled, Envelope, deterministic_id
from qastream_shared.scorecard import Scorecard
from qastream_shared.unit_of_work import UnitOfWork


async def pool(uow: UnitOfWork, tenant_id: str) -> ReviewerPool:
    row = (
        await uow.session.execute(
            select(reviewer_pools.c.body).where(reviewer_pools.c.tenant_id == tenant_id)
        )
    ).first()
    return ReviewerPool.model_validate(row[0]) if row else ReviewerPool()


async def put_pool(uow: UnitOfWork, tenant_id: str, body: ReviewerPool) -> None:
    stmt = pg_insert(reviewer_pools).values(tenant_id=tenant_id, body=body.model_dump(mode="json"))
    await uow.session.execute(
        stmt.on_conflict_do_update(
            index_elements=[reviewer_pools.c.tenant_id],
            set_={"body": stmt.excluded.body, "updated_at": func.now()},
        )
    )


def assignment_id(tenant_id: str, conversation_id: str) -> str:
    """One assignment per conversation, whichever manual plans picked it: a replay finds the same one."""
    return deterministic_id("assignment", tenant_id, conversation_id)


async def _loads(
    uow: UnitOfWork, tenant_id: str, days: set[datetime]
) -> dict[datetime, dict[str, list[int]]]:
    """day → reviewer → [held that day, held that ISO week], from what is stored."""
    out: dict[datetime, dict[str, list[int]]] = {}
    for day in days:
        start = week_start(day)
        rows = await uow.session.execute(
            select(
                assignments.c.reviewer_id,
                func.count().filter(assignments.c.period_day == day),
                func.count(),
            )
            .where(
                assignments.c.tenant_id == tenant_id,
                assignments.c.reviewer_id.is_not(None),
                assignments.c.period_day >= start,
                assignments.c.period_day < start + timedelta(days=7),
            )
            .group_by(assignments.c.reviewer_id)
        )
        out[day] = {r[0]: [int(r[1]), int(r[2])] for r in rows}
    return out


async def create_from_samples(
    uow: UnitOfWork, tenant_id: str, samples: Sequence[tuple[ConversationSampled, Envelope]], card: Scorecard
) -> int:
    """Assignments for the batch's manual samples; returns how many are new.

    Samples are taken in (sampled_at, conversation) order and quotas counted per sample day, so the same
    samples give the same assignments however they were batched.
    """
    the_pool = await pool(uow, tenant_id)
    ordered = sorted(samples, key=lambda s: (s[0].sampled_at, s[0].conversation_id))
    ids = {assignment_id(tenant_id, s.conversation_id) for s, _ in ordered}
    existing = set(
        (
            await uow.session.execute(
                select(assignments.c.assignment_id).where(assignments.c.assignment_id.in_(ids))
            )
        ).scalars()
    )
    loads = await _loads(uow, tenant_id, {period_day(s.sampled_at) for s, _ in ordered})
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    for sample, env in ordered:
        aid = assignment_id(tenant_id, sample.conversation_id)
        if aid in existing:
            continue
        existing.add(aid)
        conv = sample.conversation
        day = period_day(sample.sampled_at)
        held = loads[day]
        # Week counts of other days of the same week move too; the day's map holds the whole week.
        reviewer = choose(
            preference(the_pool, tenant_id, conv.conversation_id, conv.agent_ids, conv.team),
            {r: Load(day=v[0], week=v[1]) for r, v in held.items()},
        )
        if reviewer is not None:
            for other_day, other in loads.items():
                if week_start(other_day) == week_start(day):
                    counts = other.setdefault(reviewer, [0, 0])
                    counts[1] += 1
                    if other_day == day:
                        counts[0] += 1
        row = {
            "assignment_id": aid,
            "tenant_id": tenant_id,
            "conversation_id": conv.conversation_id,
            "reviewer_id": reviewer,
            "status": OPEN,
            "agent_id": conv.agent_id,
            "agent_ids": list(conv.agent_ids),
            "team": conv.team,
            "channel": conv.channel.value,
            "scorecard_id": card.scorecard_id,
            "scorecard_version": card.version,
            "plan_id": sample.plan_id,
            "inclusion_probability": sample.inclusion_probability,
            "period_day": day,
            "created_at": now,
        }
        rows.append(row)
        logs.append(
            log_change(
                uow,
                tenant_id,
                row,
                AssignmentAction.created,
                reviewer_id=reviewer,
                previous=None,
                reason=sample.reason,
                by=None,
                at=now,
                event_id=deterministic_id(aid, "created"),
                cause=env,
            )
        )
    if rows:
        await uow.session.execute(pg_insert(assignments).on_conflict_do_nothing(), rows)
        await uow.session.execute(assignment_log.insert(), logs)
    return len(rows)
