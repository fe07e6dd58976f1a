"""Graceful shutdown of a real service process: SIGTERM mid-stream loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, select

from qastream_scoring.app import SPEC
from qastream_shared.events import decode
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, eventually, produce_envelopes, read_topic
from qastream_shared.topics import REVIEWS, SAMPLES, ensure_topics, physical
from tests.integration.test_scoring import sampled, star

pytestmark = pytest.mark.integration


async def count(runtime: ServiceRuntime, table: str, *where) -> int:
    t = runtime.tables[table]
    async with runtime.sessions() as s:
        q = select(func.count()).select_from(t)
        for w in where:
            q = q.where(w(t))
        return int((await s.execute(q)).scalar_one())


async def committed_offsets(settings: Settings, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(o.offset for tp, o in offsets.items() if tp.topic == physical(SAMPLES, settings))
    finally:
        await admin.close()


async def test_sigterm_mid_stream_commits_the_batch_and_flushes_the_outbox(settings, spawn):
    n = 3000
    await ensure_topics(settings)
    await add_tenant(settings, "acme")
    await produce_envelopes(settings, physical(SAMPLES, settings), [sampled("acme", c) for c in star(n)])
    runtime = ServiceRuntime(SPEC, settings)
    group = runtime.batch_consumer().group_id
    port = free_port()
    env = {"QA_HTTP_PORT": str(port), "QA_CONSUMER_BATCH_SIZE": "50"}
    proc = spawn(["-m", "qastream_shared.cli", "serve", "scoring"], env)

    async def mid_stream() -> int:
        try:
            c = await count(runtime, "reviews")
        except Exception:
            return 0  # schema not migrated yet
        return c if 0 < c < n else 0

    await eventually(mid_stream, within=120, every=0.05)
    proc.popen.send_signal(signal.SIGTERM)
    # Within the grace period (the runtime's, plus uvicorn's few seconds for open requests), and cleanly.
    rc = await asyncio.to_thread(proc.popen.wait, settings.shutdown_grace_s + 10)
    assert rc == 0, proc.output()

    stored = await count(runtime, "reviews")
    assert stored < n  # it stopped mid-stream, not at the end
    # Every batch it handled was committed to Kafka, and nothing it did not handle: the group's offsets
    # are exactly the events in the inbox.
    assert await committed_offsets(settings, group) == await count(runtime, "inbox")
    # The relay published everything the last batch wrote before exiting, each event once.
    assert await count(runtime, "outbox", lambda t: t.c.published_at.is_(None)) == 0
    records = await read_topic(settings, physical(REVIEWS, settings), expect=stored, within=30)
    ids = Counter(decode(r.key, r.value, r.headers).id for r in records)
    assert len(ids) == stored and sum(ids.values()) == stored

    # The next process takes over where it stopped: the rest, once each.
    spawn(["-m", "qastream_shared.cli", "serve", "scoring"], env)
    await eventually(lambda: _at_least(runtime, n), within=180)
    records = await read_topic(settings, physical(REVIEWS, settings), expect=n, within=60)
    reviewed = Counter(decode(r.key, r.value, r.headers).data.conversation_id for r in records)  # type: ignore[attr-defined]
    assert len(reviewed) == n and set(reviewed.values()) == {1}
    assert await count(runtime, "reviews") == n
    await runtime.engine.dispose()


async def _at_least(runtime: ServiceRuntime, n: int) -> bool:
    return await count(runtime, "reviews") >= n
