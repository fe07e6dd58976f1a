"""The topic registry: every topic's name, partitions and configs, created idempotently at start."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from qastream_events.topics import (
    ASSIGNMENTS,
    CALIBRATIONS,
    COACHING,
    CONVERSATIONS,
    DISPUTES,
    INBOUND_CONVERSATIONS,
    REVIEWS,
    SAMPLES,
    SCORECARDS,
    TENANTS,
    dlq,
)
from qastream_shared.services import SERVICES
from qastream_shared.settings import Settings


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int = 3
    compacted: bool = False
    retention_ms: int | None = 7 * 24 * 3600 * 1000
    configs: dict[str, str] = field(default_factory=dict)

    def kafka_configs(self, min_insync_replicas: int = 1) -> dict[str, str]:
        cfg = {"min.insync.replicas": str(min_insync_replicas), **self.configs}
        if self.compacted:
            cfg["cleanup.policy"] = "compact"
        elif self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        return cfg


def dlq_topic(service: str) -> Topic:
    return Topic(dlq(service), partitions=1, retention_ms=30 * 24 * 3600 * 1000)


REGISTRY: tuple[Topic, ...] = (
    Topic(INBOUND_CONVERSATIONS),
    Topic(TENANTS, partitions=1, compacted=True),
    Topic(CONVERSATIONS, retention_ms=30 * 24 * 3600 * 1000),
    Topic(SAMPLES),
    Topic(SCORECARDS, compacted=True),
    # Reviews are the system of record for reporting rebuilds: keep them forever.
    Topic(REVIEWS, retention_ms=-1),
    # The rest of the review workflow is part of the record reporting rebuilds from: kept forever too.
    Topic(ASSIGNMENTS, retention_ms=-1),
    Topic(DISPUTES, retention_ms=-1),
    Topic(CALIBRATIONS, retention_ms=-1),
    Topic(COACHING, retention_ms=-1),
    *(dlq_topic(s) for s in SERVICES),
)


def physical(name: str, settings: Settings) -> str:
    """The broker-side name: a prefix isolates test runs and tenants of a shared cluster."""
    return f"{settings.topic_prefix}{name}"


def partitions_of(topic: Topic, settings: Settings) -> int:
    """QA_TOPIC_PARTITIONS sizes the consumed topics; single-partition ones (the tenant directory, DLQs) stay
    single: they are read whole, not shared out among replicas."""
    if settings.topic_partitions and topic.partitions > 1:
        return settings.topic_partitions
    return topic.partitions


async def ensure_topics(
    settings: Settings, partitions: int | None = None, extra: Sequence[Topic] = ()
) -> list[str]:
    """Create every registered topic (and `extra` ones) that does not exist yet; returns the ones created.

    An existing topic is left as it is: growing partitions re-maps keys, so it is an operator's decision
    (docs/operations.md)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                name=physical(t.name, settings),
                num_partitions=partitions or partitions_of(t, settings),
                replication_factor=settings.topic_replication_factor,
                topic_configs=t.kafka_configs(settings.topic_min_insync_replicas),
            )
            # By name: a service's own DLQ is usually registered already, and a create request naming a
            # topic twice is refused for that topic, silently.
            for t in {t.name: t for t in (*REGISTRY, *extra)}.values()
            if physical(t.name, settings) not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # a sibling process won the race; the topic is what we wanted
        return [t.name for t in new]
    finally:
        await admin.close()
