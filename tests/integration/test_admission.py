"""One admission pass per batch (shared/admission.py), seen through ingest's real inbound consumer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from qastream_ingest.app import SPEC
from qastream_ingest.tables import conversations
from qastream_shared.consumer import BatchConsumer
from qastream_shared.events import Envelope, InboundConversation, encode
from qastream_shared.outbox import unpack_headers
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import conversation, eventually, ingested, produce
from qastream_shared.topics import INBOUND_CONVERSATIONS, physical
from tests.integration.conftest_ingest import create_tenants

pytestmark = pytest.mark.integration


class CountingConsumer(BatchConsumer):
    """Counts the transactions each batch took: a rollback-and-redo shows up as a second one."""

    per_batch: list[tuple[set[str], int]]

    async def _process(self, items: Any, stop: asyncio.Event) -> None:
        self.per_batch = getattr(self, "per_batch", [])
        self.per_batch.append(({it.event_id for it in items}, 0))
        await super()._process(items, stop)

    async def _transaction(self, items: Any) -> None:
        ids, n = self.per_batch[-1]
        self.per_batch[-1] = (ids, n + 1)
        await super()._transaction(items)


def inbound(tenant: str, cid: str, **extra: Any) -> Envelope:
    body = conversation(cid, **extra).model_dump(mode="json")
    return Envelope(data=InboundConversation.model_validate(body), source="test", tenant=tenant, key=cid)


async def test_bad_events_of_a_batch_are_dead_lettered_in_one_pass(settings: Settings) -> None:
    await create_tenants(settings, "acme")
    good = [inbound("acme", f"good-{i}") for i in range(3)]
    wrong_type = ingested("acme", conversation("wrong-type"))  # an event of qa.conversations, not inbound
    unknown = [inbound("nobody", "lost-1"), inbound("nobody", "lost-2")]
    nul = [inbound("acme", "nul-agent", agent="a\x00b"), inbound("acme", "nul-team", team="t\x00")]
    envs = [good[0], wrong_type, unknown[0], good[1], nul[0], unknown[1], nul[1], good[2]]
    # One key, so one partition, so the consumer's first fetch holds them all.
    await produce(
        settings,
        physical(INBOUND_CONVERSATIONS, settings),
        [(b"acme:one-key", v, h) for _, v, h in map(encode, envs)],
    )
    runtime = ServiceRuntime(SPEC, settings)
    consumer = runtime.batch_consumer(CountingConsumer)
    assert isinstance(consumer, CountingConsumer)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:

        async def all_handled() -> list[str]:
            reasons = await dead_letter_reasons(runtime)
            return reasons if len(reasons) == 5 and await stored(runtime) == 3 else []

        reasons = await eventually(all_handled)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await runtime.engine.dispose()

    assert sorted(reasons) == sorted(
        [
            "qa.conversation.ingested.v1 does not belong on qa.inbound.conversations",
            "unknown tenant 'nobody'",
            "unknown tenant 'nobody'",
            "agent_ids.0: must not contain NUL characters",
            "team: must not contain NUL characters",
        ]
    )
    # Admission refusals cost no extra transaction; the handler's own refusals (NUL) cost one redo per
    # batch, however many there are.
    for ids, transactions in consumer.per_batch:
        assert transactions == 1 + bool(ids & {e.id for e in nul}), consumer.per_batch
    assert any(ids >= {e.id for e in nul + unknown} for ids, _ in consumer.per_batch), "not one batch"


async def dead_letter_reasons(runtime: ServiceRuntime) -> list[str]:
    outbox = runtime.tables["outbox"]
    async with runtime.sessions() as s:
        rows = (await s.execute(select(outbox.c.headers).where(outbox.c.topic.like("%qa.dlq.ingest")))).all()
    return [dict(unpack_headers(h))["dlq_reason"].decode() for (h,) in rows]


async def stored(runtime: ServiceRuntime) -> int:
    async with runtime.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(conversations))).scalar_one())
