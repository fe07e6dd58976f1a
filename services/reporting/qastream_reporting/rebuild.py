"""Rebuild: replay every consumed topic from offset 0 into a fresh schema, then swap it in atomically.

The fresh schema gets its own consumer group (BatchConsumer derives it from the schema), so it reads from
the beginning while the live service keeps projecting and serving reads. Once it has caught up, the rebuild
takes the swap lock: live batches hold it shared in each transaction (SwapGuardedConsumer), so taking
it exclusively waits for the batch in flight and holds the next one. The fresh schema then catches up with
what was committed meanwhile, and one transaction renames live → old and fresh → live. Live batches resume
against the new tables (their search path names the schema), where the inbox makes anything the rebuild
already projected a no-op. Dead letters were published by live already: the fresh outbox is marked sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_reporting.deltas import compact
from qastream_shared.consumer import BatchConsumer
from qastream_shared.db import check_schema, create_engine, drop_schema
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime, ServiceSpec
from qastream_shared.settings import Settings
from qastream_shared.topics import physical

Progress = Callable[[int, int], None]


def swap_key(schema: str) -> int:
    digest = hashlib.blake2b(f"reporting-swap:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SwapGuardedConsumer(BatchConsumer):
    async def _opened(self, session: AsyncSession) -> None:
        """Each live batch holds the swap lock shared until its transaction ends, so a swap never lands in the
        middle of one. Taken in the batch's own transaction: a lock on a second connection, taken and
        released around it, cost four more round trips a batch (a tenth of an idle batch's CPU)."""
        await session.execute(_SHARED, {"k": swap_key(self.schema)})


_SHARED = text("SELECT pg_advisory_xact_lock_shared(:k)")


async def end_offsets(settings: Settings, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = []
        for t in topics:
            parts = consumer.partitions_for_topic(physical(t, settings))
            while parts is None:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(physical(t, settings))
            tps += [TopicPartition(physical(t, settings), p) for p in parts]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


@dataclass
class Rebuilt:
    schema: str
    events: int


async def _caught_up(
    consumer: BatchConsumer, targets: dict[TopicPartition, int], progress: Progress | None
) -> None:
    total = sum(targets.values())
    while True:
        done = 0
        kafka = consumer.consumer
        if kafka is not None and consumer.ready.is_set():
            for tp, end in targets.items():
                committed = await kafka.committed(tp) or 0
                done += min(committed, end)
        if progress is not None:
            progress(done, total)
        if done >= total:
            return
        await asyncio.sleep(0.2)  # polling Kafka's committed offsets: there is no event to await


async def rebuild(
    spec: ServiceSpec,
    settings: Settings,
    *,
    progress: Progress | None = None,
    before_swap: Callable[[str, str], Awaitable[None]] | None = None,
) -> Rebuilt:
    live = settings.db_schema or spec.name
    fresh = check_schema(f"{live[:40]}_rebuild_{uuid.uuid4().hex[:8]}")
    fresh_settings = settings.model_copy(update={"db_schema": fresh})
    await migrate(fresh_settings, fresh, spec.migrations)
    runtime = ServiceRuntime(spec, fresh_settings)
    consumer = runtime.batch_consumer()
    stop = asyncio.Event()
    assert runtime.directory is not None
    tasks = [
        asyncio.create_task(runtime.directory.run(stop)),
        asyncio.create_task(consumer.run(stop)),
    ]
    admin = create_engine(settings, live, pool_size=1)
    swapped = False
    try:
        await _caught_up(consumer, await end_offsets(settings, list(spec.consumes)), progress)
        async with admin.connect() as lock:
            await lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": swap_key(live)})
            await lock.commit()
            try:
                # Live is paused between batches now: catch up with what it committed meanwhile.
                await _caught_up(consumer, await end_offsets(settings, list(spec.consumes)), progress)
                await runtime.directory.wait_caught_up()
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                async with runtime.sessions() as session, session.begin():
                    await compact(session)  # swapped in compacted, as a reader would want it
                await runtime.engine.dispose()
                if before_swap is not None:
                    await before_swap(live, fresh)
                async with admin.begin() as tx:
                    await tx.execute(
                        text(f'UPDATE "{fresh}".outbox SET published_at = now() WHERE published_at IS NULL')
                    )
                    old = check_schema(f"{live[:40]}_old_{uuid.uuid4().hex[:8]}")
                    await tx.execute(text(f'ALTER SCHEMA "{live}" RENAME TO "{old}"'))
                    await tx.execute(text(f'ALTER SCHEMA "{fresh}" RENAME TO "{live}"'))
                swapped = True
                async with admin.begin() as tx:
                    await tx.execute(text(f'DROP SCHEMA "{old}" CASCADE'))
                events = 0
                async with admin.connect() as conn:
                    events = int(
                        (await conn.execute(text(f'SELECT count(*) FROM "{live}".inbox'))).scalar_one()
                    )
            finally:
                await lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": swap_key(live)})
                await lock.commit()
        return Rebuilt(schema=live, events=events)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runtime.engine.dispose()
        if not swapped:  # a failed rebuild leaves live as it was, and nothing behind
            await drop_schema(admin, fresh)
        await admin.dispose()
