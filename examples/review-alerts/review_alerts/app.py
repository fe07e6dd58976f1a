"""A platform team's consumer of the QA event stream, built with FastStream.

It reads `qa.reviews` and `qa.coaching` in batches, decodes each record with the `qastream-events` contract
(CloudEvents binary mode, the payload model chosen by `ce_type`), appends the batch to a local Parquet table
and raises an alert for every auto-failed review. Offsets are committed after the table write (at least
once; the table dedupes by event id on read).

    KAFKA_BOOTSTRAP_SERVERS=localhost:9092 REVIEW_ALERTS_TABLE=./qa-events faststream run review_alerts.app:app
    faststream docs gen review_alerts.app:app         # its AsyncAPI document (see asyncapi.json here)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.specification import AsyncAPI

from qastream_events.envelope import Envelope, InvalidEvent, decode
from qastream_events.events import (
    CoachingImpactMeasured,
    CoachingTaskAcknowledged,
    CoachingTaskCompleted,
    CoachingTaskConfirmed,
    CoachingTaskCreated,
    CoachingTaskDismissed,
    CoachingTaskEvidenceAdded,
    CoachingTaskEvidenceWithdrawn,
    Event,
    ReviewRevised,
    ReviewSubmitted,
    RiskAlertRaised,
)
from qastream_events.topics import COACHING, REVIEWS
from review_alerts.table import ParquetTable, Row

log = logging.getLogger("review_alerts")

ReviewEvent = ReviewSubmitted | ReviewRevised
CoachingEvent = (
    CoachingTaskCreated
    | CoachingTaskEvidenceAdded
    | CoachingTaskEvidenceWithdrawn
    | CoachingTaskConfirmed
    | CoachingTaskAcknowledged
    | CoachingTaskCompleted
    | CoachingTaskDismissed
    | CoachingImpactMeasured
    | RiskAlertRaised
)


@dataclass(frozen=True)
class Alert:
    tenant: str
    review_id: str
    conversation_id: str
    agent_id: str | None
    reason: str


def log_alert(alert: Alert) -> None:
    log.warning("auto-fail: tenant %s review %s (%s)", alert.tenant, alert.review_id, alert.reason)


@dataclass
class Config:
    bootstrap_servers: str = "127.0.0.1:9092"
    table: Path = Path("qa-events")
    group_id: str = "platform-review-alerts"
    # The qastream installation's QA_TOPIC_PREFIX, if it uses one.
    topic_prefix: str = ""
    alert: Callable[[Alert], None] = field(default=log_alert)

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers),
            table=Path(os.environ.get("REVIEW_ALERTS_TABLE", str(cls.table))),
            group_id=os.environ.get("REVIEW_ALERTS_GROUP", cls.group_id),
            topic_prefix=os.environ.get("QA_TOPIC_PREFIX", ""),
        )


def records(message: KafkaMessage) -> Sequence[ConsumerRecord[bytes, bytes]]:
    raw = message.raw_message
    return raw if isinstance(raw, tuple | list) else (raw,)


def envelopes(message: KafkaMessage) -> list[Envelope]:
    """The batch's events, each decoded by the contract; records that are not valid events are skipped."""
    out = []
    for r in records(message):
        try:
            env = decode(r.key, r.value, r.headers)
        except InvalidEvent as exc:
            log.warning("skipping %s:%d:%d: %s", r.topic, r.partition, r.offset, exc.reason)
            continue
        env.origin = (r.topic, r.partition, r.offset)
        out.append(env)
    return out


_ENVELOPES = "qastream_envelopes"


async def payloads(message: KafkaMessage) -> list[Event]:
    """FastStream decoder: the typed payloads, so the handlers' annotations (and the AsyncAPI document
    FastStream makes from them) are the contract's models. The envelopes stay on the message: handlers
    need their tenant, id and offset too, without decoding twice."""
    envs = envelopes(message)
    setattr(message, _ENVELOPES, envs)
    return [env.data for env in envs]


def decoded(message: KafkaMessage) -> list[Envelope]:
    envs: list[Envelope] = getattr(message, _ENVELOPES)
    return envs


def row(env: Envelope) -> Row:
    data: Any = env.data
    topic, partition, offset = env.origin or ("", 0, 0)
    return Row(
        event_id=env.id,
        type=env.type,
        tenant=env.tenant,
        time=env.time,
        topic=topic,
        partition=partition,
        offset=offset,
        conversation_id=getattr(data, "conversation_id", None),
        review_id=getattr(data, "review_id", None),
        agent_id=getattr(data, "agent_id", None),
        score=getattr(data, "score", None),
        auto_failed=getattr(data, "auto_failed", None),
        payload=env.value().decode(),
    )


def create_app(config: Config) -> tuple[FastStream, KafkaBroker]:
    broker = KafkaBroker(config.bootstrap_servers)
    table = ParquetTable(config.table)
    options: dict[str, Any] = {
        "group_id": config.group_id,
        "batch": True,
        "max_records": 500,
        "auto_offset_reset": "earliest",
        "decoder": payloads,
        # Offsets are committed after the handler returns; a failed write leaves the batch to come again.
        "ack_policy": AckPolicy.NACK_ON_ERROR,
    }

    @broker.subscriber(config.topic_prefix + REVIEWS, title="reviews", **options)
    async def on_reviews(reviews: list[ReviewEvent], message: KafkaMessage) -> None:
        """Reviews into the table; an alert for each auto-failed one."""
        envs = decoded(message)
        table.append([row(env) for env in envs])
        for env in envs:
            review = env.data
            if isinstance(review, ReviewSubmitted | ReviewRevised) and review.auto_failed:
                config.alert(
                    Alert(
                        tenant=env.tenant,
                        review_id=review.review_id,
                        conversation_id=review.conversation_id,
                        agent_id=review.agent_id,
                        reason="a critical category scored below 50%",
                    )
                )

    @broker.subscriber(config.topic_prefix + COACHING, title="coaching", **options)
    async def on_coaching(events: list[CoachingEvent], message: KafkaMessage) -> None:
        """Coaching tasks, impact and risk alerts into the table."""
        table.append([row(env) for env in decoded(message)])

    spec = AsyncAPI(
        broker,
        title="review-alerts",
        version="0.1.0",
        description="Example platform-team consumer: qastream reviews and coaching into Parquet, alerts on auto-fail.",
    )
    return FastStream(broker, specification=spec), broker


app, broker = create_app(Config.from_env())
