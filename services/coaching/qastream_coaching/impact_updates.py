"""Impact updates: a completed task's impact, measured at completion and again as later reviews arrive."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from qastream_coaching import fact_store, task_store
from qastream_coaching.impact import measure
from qastream_coaching.published import envelope
from qastream_coaching.triggers import ReviewFact
from qastream_coaching.webhooks.outbound import Outbound
from qastream_shared.events import CoachingImpactMeasured, deterministic_id
from qastream_shared.unit_of_work import UnitOfWork


def impact_of(task: dict[str, Any], history: Sequence[ReviewFact]) -> CoachingImpactMeasured:
    """The task's category (or review) score over the N reviews up to its completion and the N after."""
    cat, n = task["category_id"], task["impact_reviews"]
    done = task["completed_at"].timestamp()
    values = [
        (f.at, v)
        for f in sorted(history, key=lambda f: (f.at, f.review_id))
        if (v := (f.categories.get(cat) if cat else f.score)) is not None
    ]
    before = [v for at, v in values if at <= done][-n:]
    after = [v for at, v in values if at > done][:n]
    m = measure(before, after, seed=task["task_id"])
    return CoachingImpactMeasured(
        task_id=task["task_id"],
        rule_id=task["rule_id"],
        agent_id=task["agent_id"],
        team=task["team"],
        assignee_id=task["assignee_id"],
        category_id=cat,
        n_before=m.n_before,
        n_after=m.n_after,
        mean_before=m.mean_before,
        mean_after=m.mean_after,
        difference=m.difference,
        ci_low=m.ci_low,
        ci_high=m.ci_high,
        measured_at=datetime.now(UTC),
    )


async def refresh_impact(
    uow: UnitOfWork, out: Outbound, tenant_id: str, task: dict[str, Any], history: Sequence[ReviewFact]
) -> None:
    measured = impact_of(task, history)
    old = task.get("impact") or {}
    if old and (old.get("n_before"), old.get("n_after")) == (measured.n_before, measured.n_after):
        return
    stored = measured.model_dump(mode="json", exclude={"measured_at"})
    await task_store.update_task(uow.session, tenant_id, task["task_id"], impact=stored)
    task["impact"] = stored
    eid = deterministic_id("impact", task["task_id"], str(measured.n_before), str(measured.n_after))
    out.publish(envelope(tenant_id, task, measured, eid))


async def refresh_impacts(uow: UnitOfWork, out: Outbound, tenant_id: str, agents: Iterable[str]) -> None:
    """Reviews that arrive after a task's completion update its impact as they come."""
    waiting = await task_store.completed_tasks(uow.session, tenant_id, agents)
    histories: dict[str, list[ReviewFact]] = {}
    for task in waiting:
        agent = task["agent_id"]
        if agent not in histories:
            histories[agent] = await fact_store.reviews_of(uow.session, tenant_id, agent)
        await refresh_impact(uow, out, tenant_id, task, histories[agent])
