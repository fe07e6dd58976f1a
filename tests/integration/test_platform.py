"""The delivery guarantees of DESIGN.md, against a real Kafka broker and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY
from sqlalchemy import func, insert, select, text

from qastream_shared.consumer import BatchConsumer
from qastream_shared.db import create_engine
from qastream_shared.events import decode, encode
from qastream_shared.migrations import migrate
from qastream_shared.outbox import OutboxRelay, outbox_row
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import (
    conversation,
    drop_isolated,
    eventually,
    ingested,
    isolated_settings,
    produce,
    produce_envelopes,
    read_topic,
)
from qastream_shared.topics import CONVERSATIONS, dlq, ensure_topics, physical
from tests.integration.probe import SPEC, effects

pytestmark = pytest.mark.integration


async def count(runtime: ServiceRuntime, table: str = "effects", **where: str) -> int:
    t = runtime.tables[table]
    q = select(func.count()).select_from(t)
    for k, v in where.items():
        q = q.where(t.c[k] == v)
    async with runtime.sessions() as s:
        return int((await s.execute(q)).scalar_one())


async def fill_outbox(runtime: ServiceRuntime, settings: Settings, n: int, tenant: str = "acme") -> list[str]:
    ids = []
    async with runtime.sessions() as s, s.begin():
        rows = []
        for i in range(n):
            env = ingested(tenant, conversation(f"c{i:06d}"))
            ids.append(env.id)
            rows.append(outbox_row(CONVERSATIONS, env, settings))
        for start in range(0, n, 2000):
            await s.execute(insert(runtime.tables["outbox"]), rows[start : start + 2000])
    return ids


@contextlib.asynccontextmanager
async def consuming(runtime: ServiceRuntime, settings: Settings):
    stop = asyncio.Event()
    consumer = runtime.batch_consumer()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_outbox_survives_relay_sigkill_and_consumer_sees_each_event_once(probe, settings, spawn):
    n = 20_000
    ids = await fill_outbox(probe, settings, n)
    relay = spawn(["-m", "tests.integration.probe", "relay"])

    async def some_published() -> int:
        published = await count_published(probe)
        return published if 0 < published < n else 0

    await eventually(some_published, within=60, every=0.02)
    relay.kill()  # SIGKILL mid-stream: rows sent but not yet marked will be sent again
    assert await count_published(probe) < n
    spawn(["-m", "tests.integration.probe", "relay"])
    await eventually(lambda: _all_published(probe, n), within=120)

    records = await read_topic(settings, physical(CONVERSATIONS, settings), expect=n)
    seen = Counter(decode(r.key, r.value, r.headers).id for r in records)
    assert set(seen) == set(ids)  # nothing lost

    async with consuming(probe, settings):
        await eventually(lambda: _count_at_least(probe, n), within=120)
    assert await count(probe) == n  # effects exactly once, even if the relay re-sent some rows
    dupes = sum(c - 1 for c in seen.values())
    print(f"relay re-sent {dupes} records after SIGKILL; consumer applied {n} effects")


async def count_published(runtime: ServiceRuntime) -> int:
    t = runtime.tables["outbox"]
    async with runtime.sessions() as s:
        return int((await s.execute(select(func.count()).where(t.c.published_at.is_not(None)))).scalar_one())


async def _all_published(runtime: ServiceRuntime, n: int) -> bool:
    return await count_published(runtime) == n


async def _count_at_least(runtime: ServiceRuntime, n: int) -> bool:
    return await count(runtime) >= n


async def test_batch_redelivered_after_db_commit_has_its_effects_once(probe, settings, spawn):
    n = 300
    await produce_envelopes(
        settings,
        physical(CONVERSATIONS, settings),
        [ingested("acme", conversation(f"r{i}")) for i in range(n)],
    )
    crasher = spawn(["-m", "tests.integration.probe", "consume", "--crash-after-db-commit"])
    await asyncio.get_running_loop().run_in_executor(None, crasher.popen.wait, 60)
    assert crasher.popen.returncode == 137
    first = await count(probe)
    assert first > 0  # the first batch's effects were committed before the crash

    async with consuming(probe, settings) as consumer:
        await eventually(lambda: _count_at_least(probe, n), within=60)
        # Everything is consumed again from the uncommitted offset; the inbox must skip the replayed part.
        await eventually(lambda: _processed_all(consumer, n - first), within=30)
    assert await count(probe) == n
    per_event: Counter[str] = Counter()
    async with probe.sessions() as s:
        for (eid,) in await s.execute(select(effects.c.event_id)):
            per_event[eid] += 1
    assert max(per_event.values()) == 1


async def _processed_all(consumer: BatchConsumer, n: int) -> bool:
    return consumer.processed >= n


async def test_bad_records_go_to_dlq_with_reason_and_partition_keeps_flowing(probe, settings):
    topic = physical(CONVERSATIONS, settings)
    good = [ingested("acme", conversation(f"g{i}")) for i in range(4)]
    _, v, h = encode(good[0])
    same_key = b"acme:poison"
    bad_json = (same_key, b"{not json", [(n, x) for n, x in h if n != "ce_id"] + [("ce_id", b"bad-json")])
    unknown = (
        same_key,
        v,
        [(n, b"qa.nope.v1" if n == "ce_type" else x) for n, x in h if n != "ce_id"] + [("ce_id", b"u")],
    )
    violation = (
        same_key,
        b'{"conversation": {"turns": "many"}}',
        [(n, x) for n, x in h if n != "ce_id"] + [("ce_id", b"s")],
    )
    # All on one key, so on one partition, interleaved with good records.
    good_recs = [(same_key, encode(g)[1], encode(g)[2]) for g in good]
    await produce(
        settings,
        topic,
        [good_recs[0], bad_json, good_recs[1], unknown, good_recs[2], violation, good_recs[3]],
    )

    async with consuming(probe, settings):
        await eventually(lambda: _count_at_least(probe, 4), within=60)
    relay_stop = asyncio.Event()
    relay = asyncio.create_task(OutboxRelay(settings, probe.schema, "probe").run(relay_stop))
    try:
        dead = await read_topic(settings, physical(dlq("probe"), settings), expect=3, within=60)
    finally:
        relay_stop.set()
        await relay
    reasons = sorted(dict(r.headers)["dlq_reason"].decode() for r in dead)
    assert len(dead) == 3
    assert any(r.startswith("qa.conversation.ingested.v1 schema violation") for r in reasons), reasons
    assert any("unknown event type 'qa.nope.v1'" in r for r in reasons), reasons
    assert any("schema violation" in r and "json" in r.lower() for r in reasons), reasons
    # Original headers travel with the dead letter.
    assert all(dict(r.headers).get("ce_source") == b"ingest" for r in dead)
    assert await count(probe) == 4


async def test_poison_event_is_isolated_after_retries_and_others_commit(probe, settings, monkeypatch):
    monkeypatch.setenv("PROBE_POISON", "poison")
    settings.consumer_max_attempts = 2
    envs = [ingested("acme", conversation(f"ok{i}")) for i in range(5)] + [
        ingested("acme", conversation("poison-1"))
    ]
    await produce_envelopes(settings, physical(CONVERSATIONS, settings), envs)
    async with consuming(probe, settings):
        await eventually(lambda: _count_at_least(probe, 5), within=60)
        await eventually(lambda: _dead_lettered(probe), within=60)
    assert await count(probe) == 5


async def _dead_lettered(runtime: ServiceRuntime) -> bool:
    return await dead_letters(runtime) == 1


async def dead_letters(runtime: ServiceRuntime) -> int:
    t = runtime.tables["outbox"]
    async with runtime.sessions() as s:
        return int(
            (await s.execute(select(func.count()).where(t.c.topic.like("%qa.dlq.probe")))).scalar_one()
        )


async def test_duplicate_event_within_one_batch_has_its_effect_once(probe, settings):
    env = ingested("acme", conversation("dup-1"))
    others = [ingested("acme", conversation(f"d{i}")) for i in range(3)]
    # The same ce_id three times on one partition: a relay re-send lands them in one fetched batch.
    await produce_envelopes(settings, physical(CONVERSATIONS, settings), [env, env, *others, env])
    async with consuming(probe, settings) as consumer:
        await eventually(lambda: _processed_all(consumer, 4), within=60)
    assert await count(probe) == 4
    assert await count(probe, conversation_id="dup-1") == 1


async def test_isolated_schemas_and_topics_are_dropped(database_url, kafka_bootstrap):
    """What the session finaliser (tests/conftest.py) calls: a test's schema, derived schemas, topics go."""
    mine = isolated_settings(database_url, kafka_bootstrap)
    other = isolated_settings(database_url, kafka_bootstrap)
    for s in (mine, mine.model_copy(update={"db_schema": f"{mine.db_schema}_b"}), other):
        await migrate(s, s.db_schema or "", SPEC.migrations)
        await ensure_topics(s)
    assert await drop_isolated([mine]) == []
    assert await schemas_like(other, "t\\_%") >= {other.db_schema}
    assert not await schemas_like(other, f"{mine.db_schema}%".replace("_", "\\_"))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert not [t for t in await admin.list_topics() if t.startswith(mine.topic_prefix)]

        # Created topics reach the broker's metadata a moment after the controller answers.
        async def others_listed() -> list[str]:
            return [t for t in await admin.list_topics() if t.startswith(other.topic_prefix)]

        await eventually(others_listed, within=30.0)
    finally:
        await admin.close()


async def schemas_like(settings: Settings, like: str) -> set[str]:
    engine = create_engine(settings, "public")
    try:
        async with engine.connect() as conn:
            query = text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :like")
            return set((await conn.execute(query, {"like": like})).scalars())
    finally:
        await engine.dispose()


async def test_a_stuck_batch_is_visible_and_stop_is_prompt_while_isolating(probe, settings, caplog):
    """A batch that fails (so it is split to find the poison) and whose records then fail transiently is
    retried for as long as it takes, visibly: a gauge of its age, a log line with the cause at growing
    intervals; and a stop ends the consumer at once, committing nothing."""
    settings.consumer_max_attempts = 1  # split the batch at its first non-transient failure
    settings.consumer_backoff_max_s = 60.0  # a stop must not wait out a backoff
    envs = [ingested("acme", conversation(f"stuck-{i}")) for i in range(3)]
    # One key, one partition: the three arrive as one batch, which the handler refuses as a whole.
    await produce(
        settings, physical(CONVERSATIONS, settings), [(b"acme:k", v, h) for _, v, h in map(encode, envs)]
    )
    transient_failures = 0

    async def handler(uow, events):
        nonlocal transient_failures
        if len(events) > 1:
            raise ValueError("one of these is poison")
        transient_failures += 1
        raise ConnectionError("database away")

    consumer = probe.batch_consumer()
    consumer.handler = handler
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="qastream_shared.consumer")
    task = asyncio.create_task(consumer.run(stop))

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if "failing for" in r.getMessage()]

    async def stuck_a_while() -> bool:
        # Logged at growing intervals, so the transient cause shows only once the batch has been stuck a while.
        return transient_failures >= 5 and any("ConnectionError('database away')" in m for m in said())

    try:
        await eventually(stuck_a_while, within=60, every=0.05)
        assert (REGISTRY.get_sample_value("qa_consumer_stuck_seconds", {"service": "probe"}) or 0) > 0
        assert any("ValueError('one of these is poison')" in m for m in said()), said()
        assert len(said()) < transient_failures + 1  # not one line per retry: at growing intervals
    finally:
        # A consumer left inside its batch would keep the process's collector paused for every later test.
        stop.set()
        await asyncio.wait_for(task, 10)  # the isolation loop watches the stop event too
    assert REGISTRY.get_sample_value("qa_consumer_stuck_seconds", {"service": "probe"}) == 0
    assert await count(probe) == 0 and await dead_letters(probe) == 0  # nothing skipped


class HeldFirstBatch(BatchConsumer):
    """Records each batch's conversation ids; the first batch waits for `release` before it is processed."""

    batches: list[list[str]]
    release: asyncio.Event

    async def _process(self, items: Any, stop: asyncio.Event) -> None:
        self.batches.append([it.env.data.conversation.conversation_id for it in items])
        if len(self.batches) == 1:
            await self.release.wait()
        await super()._process(items, stop)


async def test_records_arriving_while_a_batch_runs_join_the_next_batch(settings):
    """The consumer fetches the next batch ahead while one runs; that fetch returns with what had arrived when
    it began, and whatever arrives after it must join that next batch, not wait out one more batch."""
    # A long fetch timeout, so the fetch ahead is still waiting when the second record arrives.
    settings = settings.model_copy(update={"consumer_batch_timeout_ms": 3_000})
    runtime = ServiceRuntime(SPEC, settings)
    await migrate(settings, runtime.schema, SPEC.migrations)
    await ensure_topics(settings)
    topic = physical(CONVERSATIONS, settings)
    consumer = runtime.batch_consumer(HeldFirstBatch)
    assert isinstance(consumer, HeldFirstBatch)
    consumer.batches, consumer.release = [], asyncio.Event()

    async def send(cid: str) -> None:  # one key: one partition, so the high watermark counts every record
        await produce(settings, topic, [(b"acme:one-key", *encode(ingested("acme", conversation(cid)))[1:])])

    async def fetched(n: int) -> bool:
        assert consumer.consumer is not None
        return sum(consumer.consumer.highwater(tp) or 0 for tp in consumer.consumer.assignment()) >= n

    async def held() -> bool:
        return bool(consumer.batches)

    async def handled() -> bool:
        return await count(runtime) == 3

    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await send("a")
        await eventually(held)  # the first batch, held
        await send("b")
        await eventually(lambda: fetched(2))  # the fetch ahead returns with b alone
        await send("c")
        await eventually(lambda: fetched(3))  # c arrives while the first batch still runs
        consumer.release.set()
        await eventually(handled)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await runtime.engine.dispose()
    assert consumer.batches == [["a"], ["b", "c"]]


async def test_a_trickle_on_one_partition_is_not_held_behind_the_brokers_long_poll(settings):
    """A fetch may wait at the broker up to consumer_fetch_wait_ms for records, so an idle consumer hardly
    polls. aiokafka sends a broker no new fetch while one is pending there: a partition left out of the
    pending fetch (its records fetched but not yet taken) would wait that long poll out. The consumer's fetch
    ahead takes every fetch's records at once, so each fetch carries every partition and a record arriving on
    any of them ends the poll. Records sent one at a time on one partition, each once the one before was
    handled, must all be handled sooner than one long poll."""
    long_poll_s = 10
    settings = settings.model_copy(update={"consumer_fetch_wait_ms": long_poll_s * 1000})
    runtime = ServiceRuntime(SPEC, settings)
    await migrate(settings, runtime.schema, SPEC.migrations)
    await ensure_topics(settings)
    topic = physical(CONVERSATIONS, settings)

    async def handled(n: int) -> bool:
        return await count(runtime) >= n

    try:
        async with consuming(runtime, settings) as consumer:
            await asyncio.wait_for(consumer.ready.wait(), 60)
            started = time.monotonic()
            for n in range(1, 6):
                record = encode(ingested("acme", conversation(f"trickle-{n}")))
                await produce(settings, topic, [(b"acme:one-key", *record[1:])])
                await eventually(functools.partial(handled, n), within=long_poll_s)
            took = time.monotonic() - started
    finally:
        await runtime.engine.dispose()
    assert took < long_poll_s, f"5 records took {took:.1f} s: one waited out a {long_poll_s} s long poll"
