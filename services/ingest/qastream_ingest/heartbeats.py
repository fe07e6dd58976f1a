"""Per-partition heartbeats on qa.conversations, so that an idle partition does not hold the sampler's
event-time watermark back.

Every second, if the highest event time of the stored conversations has moved on, ingest publishes one
`PartitionHeartbeat` to each partition, through the outbox like any other event. The sampler raises that
partition's high to it, exactly as a conversation of that time would; the heartbeat is on the log, so a
replay meets it at the same offset and decides the same. A conversation committed while a heartbeat is
read may land behind it on its partition; it is then judged like any other arrival against its partition's
high and the sampler's grace, which is far larger than a heartbeat's period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from aiokafka.partitioner import murmur2
from sqlalchemy import func, select

from qastream_ingest.service import SOURCE
from qastream_ingest.tables import conversations
from qastream_shared.events import PLATFORM_TENANT, Envelope, PartitionHeartbeat
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.topics import CONVERSATIONS, REGISTRY, partitions_of

log = logging.getLogger(__name__)
EVERY_S = 1.0


def partition_keys(partitions: int) -> list[str]:
    """For each partition, a key the producer's default partitioner (murmur2, as Kafka's Java client) sends
    there: the outbox routes by key only."""
    keys: dict[int, str] = {}
    n = 0
    while len(keys) < partitions:
        key = f"heartbeat-{n}"
        keys.setdefault((murmur2(key.encode()) & 0x7FFFFFFF) % partitions, key)
        n += 1
    return [keys[p] for p in range(partitions)]


async def send_heartbeats(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    topic = next(t for t in REGISTRY if t.name == CONVERSATIONS)
    keys = partition_keys(partitions_of(topic, runtime.settings))
    sent: datetime | None = None
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), EVERY_S)
        if stop.is_set():
            return
        try:
            async with runtime.unit_of_work() as uow:
                high = (await uow.session.execute(select(func.max(conversations.c.event_time)))).scalar()
                if high is None or high == sent:
                    continue
                for partition, key in enumerate(keys):
                    beat = PartitionHeartbeat(partition=partition, event_time_high=high)
                    uow.publish(
                        CONVERSATIONS, Envelope(data=beat, source=SOURCE, tenant=PLATFORM_TENANT, key=key)
                    )
            sent = high
        except Exception as exc:  # the database may be away; the next beat tries again
            log.warning("ingest heartbeat failed: %r", exc)
