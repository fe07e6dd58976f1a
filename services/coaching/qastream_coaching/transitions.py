"""Task transitions requested over HTTP: who may do what, the lifecycle check, and the published event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from qastream_coaching import fact_store, task_store
from qastream_coaching.config_cache import ConfigCache
from qastream_coaching.impact_updates import refresh_impact
from qastream_coaching.lifecycle import Action, IllegalTransition, next_status
from qastream_coaching.published import envelope, task_event
from qastream_coaching.webhooks.outbound import Outbound
from qastream_shared.auth import Principal, may_see
from qastream_shared.events import (
    CoachingTaskAcknowledged,
    CoachingTaskCompleted,
    CoachingTaskConfirmed,
    CoachingTaskDismissed,
    CoachingTaskEvent,
    CoachingTaskStatus,
    Role,
)
from qastream_shared.unit_of_work import UnitOfWork

LEADS = frozenset({Role.admin, Role.qa_lead, Role.team_lead})
_EVENTS: dict[Action, type[CoachingTaskEvent]] = {
    Action.confirm: CoachingTaskConfirmed,
    Action.acknowledge: CoachingTaskAcknowledged,
    Action.complete: CoachingTaskCompleted,
    Action.dismiss: CoachingTaskDismissed,
}


class NotFound(Exception):
    pass


class Forbidden(Exception):
    pass


def visible_to(principal: Principal, task: dict[str, Any]) -> bool:
    """The visibility rule for one task; an agent does not see a task that waits for confirmation."""
    if principal.role is Role.agent and task["needs_confirmation"]:
        return False
    return may_see(principal, agent_id=task["agent_id"], team=task["team"])


def _may(principal: Principal, action: Action, task: dict[str, Any]) -> bool:
    if action is Action.acknowledge:  # only the coached agent acknowledges
        return principal.role is Role.agent and principal.agent_id == task["agent_id"]
    return principal.role in LEADS


async def transition(
    uow: UnitOfWork, cache: ConfigCache, principal: Principal, task_id: str, action: Action, **fields: Any
) -> dict[str, Any]:
    """Applies `action`; NotFound, Forbidden or IllegalTransition when it may not happen."""
    tenant = principal.tenant_id
    task = await task_store.task(uow.session, tenant, task_id, lock=True)
    if task is None or not visible_to(principal, task):
        raise NotFound(task_id)
    if not _may(principal, action, task):
        raise Forbidden(f"role {principal.role.value!r} may not {action.value} this task")
    status = next_status(
        CoachingTaskStatus(task["status"]), action, needs_confirmation=task["needs_confirmation"]
    )
    now = datetime.now(UTC)
    values: dict[str, Any] = {"status": status.value}
    extra: dict[str, Any] = {}
    if action is Action.confirm:
        values["needs_confirmation"] = False
    elif action is Action.complete:
        values.update(completed_at=now, notes=fields.get("notes"), quiz_score=fields.get("quiz_score"))
        extra = {"notes": fields.get("notes"), "quiz_score": fields.get("quiz_score")}
    elif action is Action.dismiss:
        values["dismiss_reason"] = fields["reason"]
        extra = {"reason": fields["reason"]}
    await task_store.update_task(uow.session, tenant, task_id, **values)
    task.update(values)
    out = await Outbound.load(uow, [tenant], cache)
    ids = (await task_store.evidence_ids(uow.session, tenant, [task_id])).get(task_id, [])
    event = task_event(_EVENTS[action], task, ids, occurred_at=now, **extra)
    out.publish(envelope(tenant, task, event))
    if action is Action.complete:  # the "before" side is known at once; "after" fills in as reviews come
        history = await fact_store.reviews_of(uow.session, tenant, task["agent_id"])
        await refresh_impact(uow, out, tenant, task, history)
    await out.flush()
    return task


__all__ = ["Forbidden", "IllegalTransition", "NotFound", "transition", "visible_to"]
