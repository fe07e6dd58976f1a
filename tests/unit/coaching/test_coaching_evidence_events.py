"""A consumer rebuilds a task's evidence from its events, whether an addition carries the whole list (events
published before `added_review_ids` existed) or only what it adds."""

from __future__ import annotations

from datetime import UTC, datetime

from qastream_shared.events import (
    CoachingTaskCreated,
    CoachingTaskEvent,
    CoachingTaskEvidenceAdded,
    CoachingTaskEvidenceWithdrawn,
    CoachingTaskStatus,
    evidence_after,
)

AT = datetime(2026, 3, 2, tzinfo=UTC)
TASK = {"task_id": "t1", "rule_id": "r", "rule_version": 1, "agent_id": "ann", "occurred_at": AT}


def fold(*events: CoachingTaskEvent) -> list[str]:
    ids: list[str] = []
    for e in events:
        ids = evidence_after(ids, e)
    return ids


def test_additions_add_and_every_other_event_states_the_whole_list() -> None:
    created = CoachingTaskCreated(**TASK, review_ids=["a", "b"], status=CoachingTaskStatus.open, title="t")
    delta = CoachingTaskEvidenceAdded(**TASK, added_review_ids=["b", "c"], status=CoachingTaskStatus.open)
    assert fold(created, delta) == ["a", "b", "c"]  # b was there already: not twice
    withdrawn = CoachingTaskEvidenceWithdrawn(
        **TASK, review_ids=["a", "c"], withdrawn_review_ids=["b"], status=CoachingTaskStatus.open
    )
    assert fold(created, delta, withdrawn, delta) == ["a", "c", "b"]


def test_an_addition_of_the_old_form_carries_the_whole_list() -> None:
    created = CoachingTaskCreated(**TASK, review_ids=["a"], status=CoachingTaskStatus.open, title="t")
    whole = CoachingTaskEvidenceAdded.model_validate_json(
        CoachingTaskEvidenceAdded(
            **TASK, review_ids=["a", "b"], status=CoachingTaskStatus.open
        ).model_dump_json(exclude={"added_review_ids"})
    )
    assert whole.added_review_ids is None
    assert fold(created, whole) == ["a", "b"]
