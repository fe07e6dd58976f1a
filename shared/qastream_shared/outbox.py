"""Transactional outbox: events are rows written in the same transaction as the effects that caused them.

The relay publishes unsent rows in id order with an idempotent, acks=all producer and marks them sent.
One relay per schema is active at a time (a Postgres advisory lock), which keeps per-key order when a
service runs several replicas. A crash between publish and mark re-sends rows: consumers dedupe by ce_id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from prometheus_client import Counter, Gauge
from sqlalchemy import Table, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_shared.db import array_insert, array_params
from qastream_shared.events import Envelope, encode
from qastream_shared.settings import Settings
from qastream_shared.topics import physical

log = logging.getLogger(__name__)

PUBLISHED = Counter("qa_outbox_published_total", "Outbox rows published to Kafka", ["service"])
# For records without a key (a dead letter of a keyless record): any partition, as send() would pick.
_PARTITIONER = DefaultPartitioner()
# How long a caught-up relay waits for a NOTIFY before it looks anyway: longer once a scan found nothing.
IDLE_POLL_S, BUSY_POLL_S = 0.5, 0.05
PENDING = Gauge("qa_outbox_pending", "Outbox rows waiting to be published at the last poll", ["service"])


def notify_channel(schema: str) -> str:
    return f"qa_outbox_{schema}"


def outbox_row(topic: str, env: Envelope, settings: Settings) -> dict[str, Any]:
    key, value, headers = encode(env)
    return {
        "tenant_id": env.tenant,
        "topic": physical(topic, settings),
        "key": key,
        "value": value,
        "headers": pack_headers(headers),
    }


def pack_headers(headers: Iterable[tuple[str, bytes]]) -> bytes:
    # Header values are bytes; latin-1 maps each byte to one code point, so orjson round-trips them exactly.
    return orjson.dumps([[k, v.decode("latin-1")] for k, v in headers])


def unpack_headers(packed: bytes) -> list[tuple[str, bytes]]:
    return [(k, v.encode("latin-1")) for k, v in orjson.loads(packed)]


def raw_row(
    tenant: str, topic: str, key: bytes | None, value: bytes, headers: Iterable[tuple[str, bytes]]
) -> dict[str, Any]:
    """A row for a record we pass on as bytes, e.g. a dead letter carrying the original headers."""
    return {
        "tenant_id": tenant,
        "topic": topic,
        "key": key,
        "value": value,
        "headers": pack_headers(headers),
    }


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The Java client's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as aiokafka's `murmur2` computes
    it, reading the key four bytes at a time: aiokafka's loop over single bytes was ~8 us per record."""
    length = len(data)
    h = 0x9747B28C ^ length
    n = length >> 2
    for k in struct.unpack_from(f"<{n}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    if extra := length & 3:
        tail = n << 2
        if extra == 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key: bytes | None, partitions: Sequence[int]) -> int:
    """The partition the Java client's default partitioner gives a key (`partitions` sorted), so a key lands
    where send() would put it."""
    if key is None:
        return int(_PARTITIONER(None, partitions, partitions))
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


_ROW_COLUMNS = ("tenant_id", "topic", "key", "value", "headers")


@functools.cache
def _insert(outbox: Table) -> TextClause:
    # The rows and the relay's wake-up in one round trip. A notification is delivered at commit, so the
    # relay wakes exactly when the rows become visible.
    rows = array_insert(outbox, _ROW_COLUMNS, suffix="")
    return text(f"WITH added AS ({rows.text}) SELECT pg_notify(:channel, '')")


async def add_rows(session: AsyncSession, outbox: Table, rows: list[dict[str, Any]], schema: str) -> None:
    if not rows:
        return
    params: dict[str, Any] = array_params(_ROW_COLUMNS, rows)
    params["channel"] = notify_channel(schema)
    await session.execute(_insert(outbox), params)


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.producer_linger_ms,
        "max_batch_size": 512 * 1024,
        "max_request_size": 16 * 1024 * 1024,
        "request_timeout_ms": 30_000,
    }
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


class OutboxRelay:
    """Publishes one schema's outbox. Safe to SIGKILL at any moment: unmarked rows are sent again."""

    def __init__(self, settings: Settings, schema: str, service: str) -> None:
        self.settings = settings
        self.schema = schema
        self.service = service
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        """Look at the outbox now (new rows, or a stop to drain for)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._run_leader(stop)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KafkaError) as exc:
                # Database or broker away, or a send failed: start over with a fresh connection and
                # producer; nothing is lost because unacknowledged rows stay unmarked.
                log.warning("outbox relay: %r; retrying", exc)
            except Exception:
                # Anything else is a bug, but a relay that stops leaves the outbox unpublished for good
                # while the service still looks healthy: say so loudly and keep relaying.
                log.exception("outbox relay failed unexpectedly; restarting it")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def _run_leader(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(
            self.settings.asyncpg_dsn, server_settings={"search_path": self.schema}, timeout=10
        )
        producer = make_producer(self.settings)
        try:
            # Blocks while another replica is the relay for this schema.
            while not await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1))", "outbox:" + self.schema
            ):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                if stop.is_set():
                    return
            await conn.add_listener(notify_channel(self.schema), lambda *_: self._wake.set())
            await producer.start()
            await self._publish(conn, producer, stop)
        finally:
            # Bounded: after a database restart a graceful close can wait forever on a dead socket.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)
            conn.terminate()

    async def _publish(
        self, conn: asyncpg.Connection, producer: AIOKafkaProducer, stop: asyncio.Event
    ) -> None:
        """Pipelined: batch k+1 is selected and handed to the producer while batch k's acks are awaited,
        and batch k is marked while batch k+1 is in flight, so the database and the broker work at once."""
        last_purge = datetime.now(UTC)
        in_flight: _Batch | None = None
        after = 0  # cursor past the rows in flight, which are still unmarked
        while True:
            if after == 0:
                # Before the scan's select, not after it: a NOTIFY that lands while the scan publishes and
                # marks is for rows the select may have missed, and it must wake the next scan at once.
                # Cleared after the scan, it was lost, and those rows waited out the poll below.
                self._wake.clear()
            batch = await self._send_batch(conn, producer, after)
            if in_flight is not None:
                await self._mark(conn, in_flight)
            in_flight = batch if batch.ids else None
            if len(batch.ids) == self.settings.relay_batch_size:
                after = batch.ids[-1]
                continue
            # Caught up. Drain, and scan from the start again: a row with a lower id whose transaction
            # committed after our select would otherwise be skipped by the cursor.
            if in_flight is not None:
                await self._mark(conn, in_flight)
                in_flight = None
            if stop.is_set():
                if after == 0:
                    return  # drained: every row committed before the stop is published and marked
                after = 0
                continue
            after = 0
            # The poll only bounds a lost notification (the listening connection replaced, say).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S if not batch.ids else BUSY_POLL_S)
            if datetime.now(UTC) - last_purge > timedelta(minutes=5):
                await conn.execute("DELETE FROM outbox WHERE published_at < now() - interval '1 hour'")
                last_purge = datetime.now(UTC)

    async def _send_batch(self, conn: asyncpg.Connection, producer: AIOKafkaProducer, after: int) -> _Batch:
        rows = await conn.fetch(
            "SELECT id, topic, key, value, headers FROM outbox"
            " WHERE published_at IS NULL AND id > $1 ORDER BY id LIMIT $2",
            after,
            self.settings.relay_batch_size,
        )
        PENDING.labels(self.service).set(len(rows))
        batch = _Batch([r["id"] for r in rows], [])
        # Records go straight into per-partition record batches (aiokafka's batch API): send() costs a
        # coroutine, a future and a partitioner call per record, which made the relay Python-bound.
        open_batches: dict[tuple[str, int], BatchBuilder] = {}
        topics: dict[str, list[int]] = {}
        for row in rows:
            topic, key, value = row["topic"], row["key"], row["value"]
            headers = unpack_headers(row["headers"])
            if (partitions := topics.get(topic)) is None:
                partitions = topics[topic] = sorted(await producer.partitions_for(topic))
            partition = partition_of(key, partitions)
            builder = open_batches.get((topic, partition))
            if builder is None:
                builder = open_batches[topic, partition] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:  # full
                batch.acks.append(await producer.send_batch(builder, topic, partition=partition))
                builder = open_batches[topic, partition] = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None, headers=headers)
        for (topic, partition), builder in open_batches.items():
            # Closed, so the producer sends it at once: it already holds every row this select found, and
            # lingering for more (linger_ms) would only add that wait to each hop of an idle pipeline.
            builder.close()
            batch.acks.append(await producer.send_batch(builder, topic, partition=partition))
        return batch

    async def _mark(self, conn: asyncpg.Connection, batch: _Batch) -> None:
        # A failed send raises here, before marking: the leader restarts and the rows are sent again.
        # Awaited one by one: most are done by now, and gather() would wrap each in a callback.
        for ack in batch.acks:
            await ack
        await conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", batch.ids)
        self.published += len(batch.ids)
        PUBLISHED.labels(self.service).inc(len(batch.ids))


@dataclass
class _Batch:
    ids: list[int]
    acks: list[asyncio.Future[Any]]
