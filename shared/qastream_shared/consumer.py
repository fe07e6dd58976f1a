"""The idempotent batch consumer every service runs (arroyo's rules on top of aiokafka).

One Kafka batch → one database transaction holding the effects, an inbox row per event and any outbox
rows. Offsets are committed only after that transaction commits, so a crash anywhere replays the batch
and the inbox turns the replay into a no-op. Records that can never be processed go to the service's
dead-letter topic (through the same outbox) with the reason, and the partition keeps flowing.
Transient failures, such as PostgreSQL being down, are retried with backoff and never skip a record; a
batch stuck that way shows in qa_consumer_stuck_seconds and in a log line with the cause at growing
intervals, and a stop ends the retrying at once (the batch is redelivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from qastream_shared.admission import Admission
from qastream_shared.batch_pace import BatchPace
from qastream_shared.collector import collector_paused, tune_gc
from qastream_shared.db import array_insert
from qastream_shared.events import Envelope, Event, InvalidEvent, decode
from qastream_shared.outbox import raw_row
from qastream_shared.settings import Settings
from qastream_shared.telemetry import context_from_traceparent, exporting, tenant_var, tracer
from qastream_shared.topics import dlq, physical
from qastream_shared.transient import is_transient
from qastream_shared.unit_of_work import Handler, Rejected, UnitOfWork

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

MESSAGES = Counter("qa_consumer_messages_total", "Records consumed", ["service", "outcome"])
DLQ = Counter("qa_dlq_total", "Records dead-lettered", ["service", "kind"])
RETRIES = Counter(
    "qa_consumer_retries_total", "Batch attempts that failed and were retried", ["service", "kind"]
)
BATCH_SIZE = Histogram(
    "qa_consumer_batch_size", "Records per batch", ["service"], buckets=(1, 10, 50, 100, 250, 500, 1000, 5000)
)
BATCH_SECONDS = Histogram("qa_consumer_batch_seconds", "Time to process and commit one batch", ["service"])
EVENT_AGE = Histogram(
    "qa_consumer_event_age_seconds",
    "Age (now - ce_time) of the oldest event of each committed batch: how fresh the service's view is",
    ["service"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21_600, 86_400),
)
STUCK = Gauge(
    "qa_consumer_stuck_seconds",
    "How long the consumer has been retrying its current batch (0 when it is not)",
    ["service"],
)
LAG = Gauge(
    "qa_consumer_lag", "Records behind the partition's high watermark", ["service", "topic", "partition"]
)


# Records decoded between yields to the event loop while a batch is fetched ahead (~1 ms of work).
DECODE_SLICE = 64


class _Stuck:
    """Since when the current batch keeps failing: read by the STUCK gauge, logged at 0 s, 1 s, 2 s, 4 s, …"""

    def __init__(self, service: str) -> None:
        self.service = service
        self.since: float | None = None
        self.next_log = 0.0
        STUCK.labels(service).set_function(self.age)

    def age(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def failed(self, records: int, exc: BaseException, transient: bool) -> None:
        if self.since is None:
            self.since, self.next_log = time.monotonic(), 0.0
        age = self.age()
        if age >= self.next_log:
            log.warning(
                "%s: batch of %d records failing for %.0fs (%s), retrying: %r",
                self.service,
                records,
                age,
                "transient" if transient else "error",
                exc,
            )
            self.next_log = max(1.0, 2 * age)

    def cleared(self) -> None:
        self.since = None


@dataclass
class _Item:
    record: ConsumerRecord[bytes, bytes]
    env: Envelope | None
    reason: str | None  # why it is dead-lettered, when it is

    @property
    def event_id(self) -> str:
        if self.env is not None:
            return self.env.id
        r = self.record
        return f"{r.topic}:{r.partition}:{r.offset}"


MAX_LINKS = 128


def _links(items: list[_Item]) -> list[trace.Link]:
    links = []
    for it in items:
        if it.env is None or not it.env.traceparent:
            continue
        context = trace.get_current_span(context_from_traceparent(it.env.traceparent)).get_span_context()
        if context.is_valid:
            links.append(trace.Link(context))
            if len(links) == MAX_LINKS:
                break
    return links


def consumer_group(settings: Settings, service: str) -> str:
    """The service's consumer group (scalers such as KEDA watch its lag)."""
    # A replay into a fresh schema is a new reader of the log, so it gets its own group (offsets from 0).
    suffix = f"-{settings.db_schema}" if settings.db_schema else ""
    return f"{settings.topic_prefix}qa-{service}{suffix}"


class BatchConsumer:
    def __init__(
        self,
        *,
        settings: Settings,
        service: str,
        topics: Sequence[str],
        sessions: async_sessionmaker[AsyncSession],
        tables: dict[str, Table],
        schema: str,
        handler: Handler,
        group_id: str | None = None,
        admission: Admission | None = None,
        produces: Mapping[str, Sequence[type[Event]]] | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.topics = [physical(t, settings) for t in topics]
        self.sessions = sessions
        self.inbox: Table = tables["inbox"]
        self.outbox: Table = tables["outbox"]
        self.schema = schema
        self.handler = handler
        self.admission = admission
        self.produces = produces
        # RETURNING names the events no earlier delivery claimed.
        self._claim = array_insert(
            self.inbox, ("event_id", "tenant_id"), suffix="ON CONFLICT DO NOTHING RETURNING event_id"
        )
        self.group_id = group_id or consumer_group(settings, service)
        self.dlq_topic = physical(dlq(service), settings)
        self.consumer: AIOKafkaConsumer | None = None
        self.processed = 0
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()  # set once run() has returned, e.g. to release what handlers use
        self._stuck = _Stuck(service)
        self.pace = BatchPace(settings)

    def _make_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            fetch_max_wait_ms=self.settings.consumer_fetch_wait_ms,
            # Generous: a batch may wait out a database restart before it commits.
            max_poll_interval_ms=600_000,
            session_timeout_ms=self.settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=self.settings.consumer_heartbeat_ms,
            group_instance_id=(
                f"{self.settings.consumer_instance_id}-{self.service}"
                if self.settings.consumer_instance_id
                else None
            ),
        )

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._make_consumer()
        self.consumer = consumer
        await consumer.start()
        tune_gc()
        # Batch k+1 is fetched and decoded while batch k's transaction waits on PostgreSQL, so the CPU work
        # of decoding fills the database round trips instead of adding to them. Fetching ahead commits
        # nothing: a batch dropped by a stop or a rebalance is redelivered, and the inbox dedupes it.
        ahead = asyncio.create_task(self._fetch(consumer, max_records=self.pace.limit()))
        try:
            while not stop.is_set():
                batch, items = await ahead
                if batch and (room := self.pace.limit() - len(items)) > 0:
                    # The fetch ahead returned with what had arrived when the batch before began: what came
                    # in while that batch ran joins this one now instead of waiting out another batch.
                    more, more_items = await self._fetch(consumer, timeout_ms=0, max_records=room)
                    for tp, records in more.items():
                        batch.setdefault(tp, []).extend(records)
                    items += more_items
                ahead = asyncio.create_task(self._fetch(consumer, max_records=self.pace.limit()))
                if consumer.assignment():
                    self.ready.set()
                if not batch:
                    continue
                started = time.perf_counter()
                with collector_paused():
                    await self._process(items, stop)
                    if stop.is_set() and not self._committed_all:
                        break
                    await self._commit(consumer, batch)
                spent = time.perf_counter() - started
                BATCH_SIZE.labels(self.service).observe(len(items))
                BATCH_SECONDS.labels(self.service).observe(spent)
                self.pace.batch_took(spent, len(items))
                if oldest := min((it.env.time for it in items if it.env is not None), default=None):
                    EVENT_AGE.labels(self.service).observe(max(0.0, time.time() - oldest.timestamp()))
                for tp in batch:
                    hw = consumer.highwater(tp)
                    pos = await consumer.position(tp)
                    if hw is not None:
                        LAG.labels(self.service, tp.topic, str(tp.partition)).set(max(0, hw - pos))
        finally:
            ahead.cancel()
            with contextlib.suppress(BaseException):
                await ahead
            with contextlib.suppress(Exception):
                await consumer.stop()
            self.stopped.set()

    async def _fetch(
        self, consumer: AIOKafkaConsumer, timeout_ms: int | None = None, max_records: int | None = None
    ) -> tuple[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], list[_Item]]:
        batch = await consumer.getmany(
            timeout_ms=self.settings.consumer_batch_timeout_ms if timeout_ms is None else timeout_ms,
            max_records=max_records or self.settings.consumer_batch_size,
        )
        items = []
        for records in batch.values():
            for r in records:
                try:
                    env = decode(r.key, r.value, r.headers)
                    env.origin = (r.topic, r.partition, r.offset)
                    items.append(_Item(r, env, None))
                except InvalidEvent as exc:
                    items.append(_Item(r, None, exc.reason))
                if len(items) % DECODE_SLICE == 0:
                    await asyncio.sleep(0)  # let the running batch's database replies in between
        return batch, items

    async def _commit(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        offsets = {tp: recs[-1].offset + 1 for tp, recs in batch.items() if recs}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Partitions moved to another member mid-batch: it replays the batch, and the inbox dedupes.
            log.warning("offset commit failed after a rebalance (%s); the batch will be redelivered", exc)

    _committed_all = True

    async def _process(self, items: list[_Item], stop: asyncio.Event) -> None:
        self._committed_all = False
        try:
            self._committed_all = await self._until_committed(items, stop, isolate=True)
        finally:
            self._stuck.cleared()

    async def _until_committed(self, items: list[_Item], stop: asyncio.Event, *, isolate: bool) -> bool:
        """Commits `items`, or returns False once `stop` is set. Transient failures are retried for as long as
        they last (a record is never skipped), with backoff, the stuck gauge and a log line at growing
        intervals. A batch that keeps failing otherwise is split to find the poison (`isolate`); a single
        record that does is dead-lettered."""
        attempt = 0
        delay = 0.1
        while True:
            try:
                await self._transaction(items)
                return True
            except Rejected as rej:
                # Dead-letter those events and redo the rest of the batch in a fresh transaction.
                marked = 0
                for it in items:
                    if it.env is not None and it.reason is None and it.env.id in rej.reasons:
                        it.reason = rej.reasons[it.env.id]
                        marked += 1
                if not marked:
                    raise RuntimeError(f"handler rejected events not in the batch: {rej}") from rej
                continue
            except Exception as exc:
                transient = is_transient(exc)
                RETRIES.labels(self.service, "transient" if transient else "error").inc()
                self._stuck.failed(len(items), exc, transient)
                if not transient:
                    attempt += 1
                    if attempt >= self.settings.consumer_max_attempts:
                        if isolate and len(items) > 1:
                            return await self._isolate_poison(items, stop)
                        for it in items:
                            it.reason = it.reason or f"handler failed {attempt} times: {exc!r}"[:1000]
                        continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return False
                delay = min(delay * 2, self.settings.consumer_backoff_max_s)

    async def _isolate_poison(self, items: list[_Item], stop: asyncio.Event) -> bool:
        """A batch kept failing for a non-transient reason: each record on its own, so only the ones at fault
        are dead-lettered (the rest commit, and a redelivery is inbox-deduped)."""
        for it in items:
            if not await self._until_committed([it], stop, isolate=False):
                return False
        return True

    async def _transaction(self, items: list[_Item]) -> None:
        if not items:
            return
        uow: UnitOfWork | None = None
        started = time.time_ns()
        # One span per batch, linked to the traces of its events (W3C traceparent header), when spans leave
        # the process: parsing every record's traceparent was a few % of a consumer's time for nothing.
        links = _links(items) if exporting() else []
        tenants = {it.env.tenant for it in items if it.env is not None}
        token = tenant_var.set(next(iter(tenants)) if len(tenants) == 1 else None)
        try:
            with _tracer.start_as_current_span(
                f"{self.service} process",
                kind=trace.SpanKind.CONSUMER,
                links=links,
                attributes={"messaging.system": "kafka", "messaging.batch.message_count": len(items)},
            ):
                async with self.sessions() as session, session.begin():
                    await self._opened(session)
                    uow = UnitOfWork(session, self.settings, self.outbox, self.schema, produces=self.produces)
                    todo, fresh, dead = await self._claim_and_handle(uow, items)
        except BaseException:
            for hook in uow.on_rollback if uow is not None else ():
                hook()
            raise
        finally:
            tenant_var.reset(token)
        assert uow is not None
        for hook in uow.on_commit:
            hook()
        if todo and exporting():
            self._event_spans(todo, started)
        self.processed += len(todo)
        MESSAGES.labels(self.service, "processed").inc(len(todo))
        MESSAGES.labels(self.service, "duplicate").inc(len(items) - len(fresh))
        if dead:
            MESSAGES.labels(self.service, "dead_lettered").inc(dead)
            for it in items:
                if it.reason is not None and it.event_id in fresh:
                    DLQ.labels(self.service, it.reason.split(":", 1)[0][:60]).inc()
                    log.warning("dead-lettered %s: %s", it.event_id, it.reason)

    async def _opened(self, session: AsyncSession) -> None:
        """Runs first in each batch's transaction: a subclass's hook (reporting takes its swap lock here)."""

    def _event_spans(self, events: list[Envelope], started: int) -> None:
        """A span per event in its own trace (its traceparent), so one conversation's path through every
        service is one trace; the batch span above only links to them."""
        now = time.time_ns()
        for env in events:
            if not env.traceparent:
                continue
            span = _tracer.start_span(
                f"{self.service} handle {env.type}",
                context=context_from_traceparent(env.traceparent),
                kind=trace.SpanKind.CONSUMER,
                start_time=started,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.message.id": env.id,
                    "qa.service": self.service,
                    "qa.tenant": env.tenant,
                    "qa.subject": env.subject or "",
                },
            )
            span.end(end_time=now)

    async def _claim_and_handle(
        self, uow: UnitOfWork, items: list[_Item]
    ) -> tuple[list[Envelope], set[str], int]:
        claims = {
            "event_id": [it.event_id for it in items],
            "tenant_id": [it.env.tenant if it.env else None for it in items],
        }
        result = await uow.session.execute(self._claim, claims)
        fresh = set(result.scalars().all())
        todo: list[Envelope] = []
        dead = 0
        unclaimed = set(fresh)
        for it in items:
            if it.event_id not in unclaimed:
                continue  # processed in an earlier delivery, or earlier in this same batch
            unclaimed.discard(it.event_id)
            if it.reason is not None:
                uow.pending.append(self._dead_letter_row(it))
                dead += 1
            elif it.env is not None:
                todo.append(it.env)
        refused = await self.admission.refusals(uow.session, todo) if self.admission and todo else {}
        if refused:
            for it in items:
                if it.env is not None and it.reason is None and it.env.id in refused:
                    it.reason = refused[it.env.id]
                    uow.pending.append(self._dead_letter_row(it))
                    dead += 1
            todo = [env for env in todo if env.id not in refused]
        if todo:
            await self.handler(uow, todo)
        await uow.flush()
        return todo, fresh, dead

    def _dead_letter_row(self, it: _Item) -> dict[str, Any]:
        r = it.record
        headers = [(k, v) for k, v in (r.headers or ()) if v is not None] + [
            ("dlq_reason", (it.reason or "").encode()),
            ("dlq_topic", r.topic.encode()),
            ("dlq_partition", str(r.partition).encode()),
            ("dlq_offset", str(r.offset).encode()),
            ("dlq_service", self.service.encode()),
        ]
        tenant = (
            it.env.tenant if it.env else dict(r.headers or ()).get("ce_tenant", b"").decode(errors="replace")
        )
        return raw_row(tenant or "unknown", self.dlq_topic, r.key, r.value or b"", headers)
