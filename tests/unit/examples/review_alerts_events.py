"""Events for the review-alerts example's tests, built with the contract's own models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from qastream_events.envelope import Envelope, conversation_key
from qastream_events.events import (
    CoachingTaskCreated,
    CoachingTaskStatus,
    Rating,
    ReviewKind,
    ReviewSubmitted,
)


def review(tenant: str, *, auto_failed: bool = False, score: float = 0.9) -> Envelope:
    conversation_id = uuid.uuid4().hex
    data = ReviewSubmitted(
        review_id=uuid.uuid4().hex,
        conversation_id=conversation_id,
        kind=ReviewKind.auto,
        scorecard_id="default",
        scorecard_version=1,
        agent_id="agent-7",
        ratings=[Rating(category_id="greeting", value=1, score=1.0)],
        score=0.0 if auto_failed else score,
        auto_failed=auto_failed,
        submitted_at=datetime.now(UTC),
    )
    return Envelope(
        data=data,
        source="scoring",
        tenant=tenant,
        key=conversation_key(tenant, conversation_id),
        subject=conversation_id,
    )


def coaching_task(tenant: str) -> Envelope:
    now = datetime.now(UTC)
    data = CoachingTaskCreated(
        task_id=uuid.uuid4().hex,
        rule_id="below-pass-mark",
        rule_version=1,
        agent_id="agent-7",
        status=CoachingTaskStatus.open,
        occurred_at=now,
        title="Review the greeting",
    )
    return Envelope(data=data, source="coaching", tenant=tenant, key=f"{tenant}:agent-7")
