"""The task lifecycle: open → acknowledged (by the agent) → completed, or dismissed from either. Pure.

A task opened from AutoQA-only evidence under a rule that requires confirmation waits for a lead's
confirmation before the agent sees or acknowledges it.
"""

from __future__ import annotations

from enum import StrEnum

from qastream_shared.events import CoachingTaskStatus as Status


class Action(StrEnum):
    confirm = "confirm"
    acknowledge = "acknowledge"
    complete = "complete"
    dismiss = "dismiss"


class IllegalTransition(Exception):
    pass


_NEXT: dict[Action, dict[Status, Status]] = {
    Action.confirm: {Status.open: Status.open},
    Action.acknowledge: {Status.open: Status.acknowledged},
    Action.complete: {Status.acknowledged: Status.completed},
    Action.dismiss: {Status.open: Status.dismissed, Status.acknowledged: Status.dismissed},
}


def next_status(status: Status, action: Action, *, needs_confirmation: bool) -> Status:
    """The status after `action`, or IllegalTransition saying why it is not allowed now."""
    if action is Action.confirm and not needs_confirmation:
        raise IllegalTransition("the task does not need confirmation")
    if action is Action.acknowledge and needs_confirmation:
        raise IllegalTransition("the task waits for a lead's confirmation")
    after = _NEXT[action].get(status)
    if after is None:
        raise IllegalTransition(f"cannot {action.value} a task that is {status.value}")
    return after
