"""What a unit of work publishes: events on qa.coaching, and a delivery row for every webhook subscribed to
them. Deliveries are rows in the same transaction as the effects, drained later by the delivery loop, so a
slow receiver never holds up the consumer or an API call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from qastream_coaching.config_cache import ConfigCache
from qastream_coaching.webhooks import store
from qastream_shared.events import (
    CalibrationClosed,
    CoachingImpactMeasured,
    CoachingTaskAcknowledged,
    CoachingTaskCompleted,
    CoachingTaskConfirmed,
    CoachingTaskCreated,
    CoachingTaskDismissed,
    CoachingTaskEvidenceAdded,
    CoachingTaskEvidenceWithdrawn,
    Envelope,
    ReviewRevised,
    ReviewSubmitted,
    RiskAlertRaised,
    deterministic_id,
)
from qastream_shared.topics import COACHING
from qastream_shared.unit_of_work import UnitOfWork

# The event types a webhook may subscribe to: reviews, coaching tasks and their impact, alerts, calibrations.
WEBHOOK_TYPES = frozenset(
    m.TYPE
    for m in (
        ReviewSubmitted,
        ReviewRevised,
        CoachingTaskCreated,
        CoachingTaskEvidenceAdded,
        CoachingTaskEvidenceWithdrawn,
        CoachingTaskConfirmed,
        CoachingTaskAcknowledged,
        CoachingTaskCompleted,
        CoachingTaskDismissed,
        CoachingImpactMeasured,
        RiskAlertRaised,
        CalibrationClosed,
    )
)


def body_of(env: Envelope) -> bytes:
    """The delivered JSON: the CloudEvent in structured form (its payload under `data`)."""
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": env.id,
            "type": env.type,
            "source": env.source,
            "time": env.time.isoformat(),
            "tenant": env.tenant,
            "subject": env.subject,
            "data": orjson.Fragment(env.value()),
        }
    )


class Outbound:
    def __init__(self, uow: UnitOfWork, subscriptions: dict[str, list[tuple[str, frozenset[str]]]]) -> None:
        self.uow = uow
        self.subscriptions = subscriptions
        self.rows: list[dict[str, Any]] = []

    @classmethod
    async def load(cls, uow: UnitOfWork, tenants: Iterable[str], cache: ConfigCache) -> Outbound:
        """The active subscriptions of these tenants (cached for the process, see ConfigCache)."""
        return cls(uow, await cache.subscriptions_of(uow.session, tenants))

    def publish(self, env: Envelope) -> None:
        self.uow.publish(COACHING, env)
        self.notify(env)

    def notify(self, env: Envelope) -> None:
        """Queues a delivery of `env` for every webhook of its tenant subscribed to its type."""
        for wid, types in self.subscriptions.get(env.tenant, ()):
            if env.type in types:
                self.rows.append(
                    {
                        # One delivery per (webhook, event), however often the event is handled again.
                        "delivery_id": deterministic_id("delivery", wid, env.id),
                        "tenant_id": env.tenant,
                        "webhook_id": wid,
                        "event_id": env.id,
                        "event_type": env.type,
                        "body": body_of(env),
                        "status": "pending",
                    }
                )

    async def flush(self) -> None:
        await store.enqueue(self.uow.session, self.rows)
        self.rows.clear()
