"""Platform throughput: raw aiokafka against the outbox relay and the inbox consumer, same run, same broker.

    uv run python -m bench.platform [--messages 50000]

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when both are set, else starts (or reuses) the launcher's
local stack. Everything runs in a fresh topic prefix and schema, dropped at the end. Prints JSON:
- raw_produce: ~1 KB records, acks=all, idempotent, linger, send() without awaiting each (the relay's
  own producer settings, from outbox.make_producer);
- raw_consume: getmany() in batches of the consumer batch size over the same records, no processing;
- relay: rows pre-inserted into the outbox (~1 KB ConversationIngested envelopes), OutboxRelay running
  until every row is published and marked;
- inbox: the relay's records consumed by BatchConsumer, one transaction per batch holding the inbox rows
  and the probe handler's one effect row per event, offsets committed after each commit;
- decode_only: `events.decode` alone over the same kind of records, in memory: the ceiling of any
  consumer that validates its input, put beside raw_consume;
- decode_by_type: the same, per event type the busy consumers read (a real STAR conversation, an AutoQA
  review with ten rated categories, an assignment change, coaching task events): µs per event and the
  ratio of its rate to raw_consume;
and the ratios relay/raw_produce (target >= 0.5) and inbox/raw_consume (target >= 0.3).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import insert

from bench.common import TINY_HELP, Stopwatch, create_topic, emit, rate, ratio
from qastream_shared import events as ev
from qastream_shared.conversation import Conversation
from qastream_shared.db import drop_schema
from qastream_shared.events import Envelope, decode, encode
from qastream_shared.migrations import migrate
from qastream_shared.outbox import OutboxRelay, make_producer, outbox_row
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.stack import Stack
from qastream_shared.testing import conversation, ingested, isolated_settings, star_records
from qastream_shared.topics import CONVERSATIONS, ensure_topics
from tests.integration.probe import SPEC

RAW_VALUE_BYTES = 1024
TURNS = 6  # gives a ~0.9 KB ConversationIngested body plus ~0.2 KB of CloudEvents headers
BATCH = 500
PARTITIONS = 3


def servers() -> tuple[str, str]:
    db, kafka = os.environ.get("DATABASE_URL"), os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if db and kafka:
        return db, kafka
    stack = Stack()
    return stack.ensure_postgres(), stack.ensure_kafka()


async def raw_produce(settings: Settings, topic: str, n: int) -> dict[str, Any]:
    producer = make_producer(settings)
    await producer.start()
    value = os.urandom(RAW_VALUE_BYTES)
    try:
        await producer.partitions_for(topic)  # metadata, untimed
        clock = Stopwatch()
        futures = [await producer.send(topic, value, key=b"c%d" % i) for i in range(n)]
        await asyncio.gather(*futures)
        clock.stop()
    finally:
        await producer.stop()
    return rate(n, clock.seconds, value_bytes=RAW_VALUE_BYTES)


async def raw_consume(settings: Settings, topic: str, n: int) -> dict[str, Any]:
    # The BatchConsumer's fetch sizes, so the two consume rates differ only by the work per batch.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        clock = Stopwatch()  # before assign: the first fetch is part of consuming
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = 0
        while got < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            got += sum(len(records) for records in batch.values())
        clock.stop()
    finally:
        await consumer.stop()
    return rate(got, clock.seconds, batch=BATCH)


async def fill_outbox(runtime: ServiceRuntime, settings: Settings, n: int) -> int:
    """Untimed set-up: n ConversationIngested rows in the outbox; returns one record's size in bytes."""
    outbox = runtime.tables["outbox"]
    size = 0
    async with runtime.sessions() as session, session.begin():
        for start in range(0, n, 5000):
            rows = []
            for i in range(start, min(n, start + 5000)):
                env = ingested("acme", conversation(f"c{i:07d}", turns=TURNS))
                rows.append(outbox_row(CONVERSATIONS, env, settings))
            await session.execute(insert(outbox), rows)
        key, value, headers = encode(env)
        size = len(key or b"") + len(value) + sum(len(k) + len(v) for k, v in headers)
    return size


async def relay_rate(
    runtime: ServiceRuntime, settings: Settings, n: int, record_bytes: int
) -> dict[str, Any]:
    relay = OutboxRelay(settings, runtime.schema, "bench")
    stop = asyncio.Event()
    clock = Stopwatch()
    task = asyncio.create_task(relay.run(stop))
    while relay.published < n:
        if task.done():
            task.result()
            raise RuntimeError("relay stopped early")
        await asyncio.sleep(0.005)  # polling granularity of the measurement
    clock.stop()
    stop.set()
    await task
    return rate(relay.published, clock.seconds, record_bytes=record_bytes, batch=settings.relay_batch_size)


async def inbox_rate(runtime: ServiceRuntime, settings: Settings, n: int) -> dict[str, Any]:
    consumer = runtime.batch_consumer()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await consumer.ready.wait()  # the group join is start-up, not throughput
    clock = Stopwatch()
    while consumer.processed < n:
        if task.done():
            task.result()
            raise RuntimeError("consumer stopped early")
        await asyncio.sleep(0.005)
    clock.stop()
    stop.set()
    await task
    return rate(consumer.processed, clock.seconds, batch=settings.consumer_batch_size)


def decode_only(n: int) -> dict[str, Any]:
    """The ceiling of any consumer that validates what it reads: `decode` alone over the same records,
    in memory, no I/O (the CloudEvents attributes and the ConversationIngested payload, validated)."""
    records = [
        encode(ingested("acme", conversation(f"c{i:07d}", turns=TURNS))) for i in range(min(n, 10_000))
    ]
    clock = Stopwatch()
    for key, value, headers in records:
        decode(key, value, headers)
    clock.stop()
    return rate(len(records), clock.seconds)


def _star_conversation() -> Callable[[int], Envelope]:
    stars = list(itertools.islice(star_records(), 500))

    def make(i: int) -> Envelope:
        star = stars[i % len(stars)]
        return ingested(
            "acme", Conversation.model_validate({**star, "conversation_id": f"c{i}", "agent_ids": ["a1"]})
        )

    return make


def _auto_review(i: int) -> Envelope:
    """An AutoQA review as scoring publishes it: ten categories, each with its provenance, and a pCSAT."""
    evidence = [ev.Evidence(turn=2, quote="I understand how frustrating that is")]
    ratings = [
        ev.Rating(
            category_id=f"cat-{k}",
            value=(i + k) % 5,
            score=((i + k) % 5) / 4,
            root_causes=["process"] if (i + k) % 5 == 0 else [],
            provenance=ev.Provenance(
                scorer="phrases", version="1.0.0", confidence=0.8, evidence=evidence[: k % 2]
            ),
        )
        for k in range(10)
    ]
    pcsat = ev.PredictedCsat(
        model_version="p1",
        predicted=3.5,
        p_dissatisfied=0.2,
        cues=[
            ev.CsatCue(name="wait", value=40.0, effect=0.3, turns=[1, 3]),
            ev.CsatCue(name="apology", effect=-0.1),
        ],
    )
    data = ev.ReviewSubmitted(
        review_id=f"r{i}",
        conversation_id=f"c{i}",
        kind=ev.ReviewKind.auto,
        scorecard_id="cs",
        scorecard_version=1,
        scorer_versions={"phrases": "1.0.0", "pcsat": "p1"},
        agent_id=f"agent-{i % 100}",
        team="team-a",
        channel="chat",
        ratings=ratings,
        score=0.6,
        passed=True,
        pcsat=pcsat,
        submitted_at=datetime.now(UTC),
    )
    return Envelope(data=data, source="scoring", tenant="acme", key=f"acme:c{i}", subject=f"c{i}")


def _assignment(i: int) -> Envelope:
    data = ev.AssignmentChanged(
        assignment_id=f"as{i}",
        conversation_id=f"c{i}",
        action=ev.AssignmentAction.created,
        reviewer_id="reviewer-1",
        plan_id="plan-1",
        inclusion_probability=0.1,
        reason="manual sample",
        by="sampler",
        occurred_at=datetime.now(UTC),
        agent_id="agent-1",
        team="team-a",
    )
    return Envelope(data=data, source="sampler", tenant="acme", key=f"acme:c{i}")


def _task(kind: type[ev.CoachingTaskEvent], **fields: Any) -> Callable[[int], Envelope]:
    def make(i: int) -> Envelope:
        now = datetime.now(UTC)
        data = kind(
            task_id=f"t{i}",
            rule_id="rule-1",
            rule_version=1,
            agent_id=f"agent-{i % 100}",
            team="team-a",
            assignee_id="lead-1",
            category_id="cat-1",
            status=ev.CoachingTaskStatus.open,
            due_at=now + timedelta(days=7),
            occurred_at=now,
            **fields,
        )
        return Envelope(data=data, source="coaching", tenant="acme", key=f"acme:agent-{i % 100}")

    return make


def decode_by_type(n: int, raw_per_s: float) -> dict[str, Any]:
    """`decode` alone per event type, best of three passes (the machine is shared): µs per event, and its
    rate over raw_consume's, the ceiling a consumer reading only that type could reach."""
    makers: dict[str, Callable[[int], Envelope]] = {
        "ConversationIngested": _star_conversation(),
        "ReviewSubmitted": _auto_review,
        "AssignmentChanged": _assignment,
        "CoachingTaskCreated": _task(
            ev.CoachingTaskCreated, title="Empathy", review_ids=[f"r{k}" for k in range(5)]
        ),
        "CoachingTaskEvidenceAdded": _task(ev.CoachingTaskEvidenceAdded, added_review_ids=["r9"]),
    }
    out: dict[str, Any] = {}
    for name, make in makers.items():
        records = [encode(make(i)) for i in range(min(n, 5000))]
        best = float("inf")
        for _ in range(3):
            clock = Stopwatch()
            for key, value, headers in records:
                decode(key, value, headers)
            best = min(best, clock.stop())
        per_s = len(records) / best
        out[name] = {
            "body_bytes": round(sum(len(value) for _, value, _ in records) / len(records)),
            "us_per_event": round(1e6 / per_s, 1),
            "per_s": round(per_s, 1),
            "over_raw_consume": round(per_s / raw_per_s, 3),
        }
    return out


async def cleanup(runtime: ServiceRuntime, settings: Settings) -> None:
    await drop_schema(runtime.engine, runtime.schema)
    await runtime.engine.dispose()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
        await admin.delete_topics(ours)
    finally:
        await admin.close()


async def main(n: int) -> dict[str, Any]:
    db, kafka = servers()
    settings = isolated_settings(db, kafka, consumer_batch_size=BATCH)
    runtime = ServiceRuntime(SPEC, settings)
    raw_topic = f"{settings.topic_prefix}bench.raw"
    try:
        await migrate(settings, runtime.schema, SPEC.migrations)
        await ensure_topics(settings, partitions=PARTITIONS)
        await create_topic(kafka, raw_topic, PARTITIONS)

        produced = await raw_produce(settings, raw_topic, n)
        consumed = await raw_consume(settings, raw_topic, n)
        record_bytes = await fill_outbox(runtime, settings, n)
        relayed = await relay_rate(runtime, settings, n, record_bytes)
        inboxed = await inbox_rate(runtime, settings, n)
        decoded = decode_only(n)
        by_type = decode_by_type(n, consumed["per_s"])
    finally:
        await cleanup(runtime, settings)
    return {
        "kafka": kafka,
        "raw_produce": produced,
        "raw_consume": consumed,
        "relay": relayed,
        "inbox": inboxed,
        "decode_only": decoded,
        "relay_over_raw_produce": ratio(relayed["per_s"], produced["per_s"], 0.5),
        "inbox_over_raw_consume": ratio(inboxed["per_s"], consumed["per_s"], 0.3),
        # What the inbox ratio could reach if claiming, the effects and committing cost nothing.
        "decode_only_over_raw_consume": round(decoded["per_s"] / consumed["per_s"], 3),
        "decode_by_type": by_type,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    emit(asyncio.run(main(600 if args.tiny else args.messages)))
