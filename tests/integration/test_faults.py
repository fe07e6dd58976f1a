"""Fault tests: PostgreSQL down for 10 s, and a Kafka broker restart, while the relay and consumer run.

They stop servers, so they run against a PRIVATE PostgreSQL and Kafka started by the launcher in a
temporary state dir, never against the shared ones given by DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS.
Overriding `database_url` and `kafka_bootstrap` for this module makes the `settings` and `probe` fixtures
of tests/integration/conftest.py point at that private stack.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from qastream_shared.consumer import BatchConsumer
from qastream_shared.events import Envelope
from qastream_shared.outbox import OutboxRelay
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.stack import Stack
from qastream_shared.testing import conversation, eventually, ingested, produce_envelopes
from qastream_shared.topics import CONVERSATIONS, physical
from tests.integration.conftest import private_servers
from tests.integration.probe import effects

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 10.0


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A launcher-owned PostgreSQL and Kafka for this module only, started once for both tests."""
    with private_servers(tmp_path_factory.mktemp("fault-stack")) as stack:
        yield stack


@pytest.fixture(scope="module")
def database_url(private_stack: Stack) -> str:
    url: str = private_stack.state()["postgres"]["url"]
    assert private_stack.owns_postgres(url)
    return url


@pytest.fixture(scope="module")
def kafka_bootstrap(private_stack: Stack) -> str:
    bootstrap: str = private_stack.state()["kafka"]["bootstrap"]
    assert private_stack.owns_kafka(bootstrap)
    return bootstrap


@dataclass
class Running:
    consumer: BatchConsumer
    relay: OutboxRelay
    tasks: list[asyncio.Task[None]]

    def alive(self) -> bool:
        return not any(t.done() for t in self.tasks)


@contextlib.asynccontextmanager
async def running(runtime: ServiceRuntime, settings: Settings) -> AsyncIterator[Running]:
    """The probe's consumer and outbox relay as tasks of this event loop, like a service process runs them."""
    stop = asyncio.Event()
    consumer = runtime.batch_consumer()
    relay = OutboxRelay(settings, runtime.schema, "probe")
    tasks = [asyncio.create_task(consumer.run(stop)), asyncio.create_task(relay.run(stop))]
    try:
        yield Running(consumer, relay, tasks)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


def envelopes(prefix: str, n: int) -> list[Envelope]:
    return [ingested("acme", conversation(f"{prefix}{i:05d}")) for i in range(n)]


async def effect_counts(runtime: ServiceRuntime) -> Counter[str]:
    async with runtime.sessions() as s:
        return Counter(eid for (eid,) in await s.execute(select(effects.c.event_id)))


async def n_effects(runtime: ServiceRuntime) -> int:
    async with runtime.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(effects))).scalar_one())


async def dead_letters(runtime: ServiceRuntime) -> int:
    t = runtime.tables["outbox"]
    async with runtime.sessions() as s:
        return int((await s.execute(select(func.count()).where(t.c.topic.like("%qa.dlq.%")))).scalar_one())


async def reach(runtime: ServiceRuntime, n: int, within: float = 120) -> None:
    async def done() -> bool:
        return await n_effects(runtime) >= n

    await eventually(done, within=within, every=0.2)


async def test_postgres_down_for_10s_loses_and_doubles_nothing(
    private_stack: Stack, probe: ServiceRuntime, settings: Settings
) -> None:
    topic = physical(CONVERSATIONS, settings)
    before, during = envelopes("pg-before-", 300), envelopes("pg-during-", 300)
    async with running(probe, settings) as loops:
        await produce_envelopes(settings, topic, before)

        async def some_effects() -> int:
            return await n_effects(probe)

        await eventually(some_effects, within=60, every=0.05)
        assert await asyncio.to_thread(private_stack.stop_postgres)
        await produce_envelopes(settings, topic, during)
        await asyncio.sleep(OUTAGE_S)  # the fault's duration, not a wait for an event
        assert loops.alive(), "consumer or relay died while PostgreSQL was down"
        await asyncio.to_thread(private_stack.start_postgres)

        await reach(probe, len(before) + len(during))
        assert loops.alive(), "consumer or relay died after PostgreSQL came back"
    seen = await effect_counts(probe)
    assert set(seen) == {e.id for e in before + during}  # nothing lost
    assert max(seen.values()) == 1  # nothing doubled
    assert await dead_letters(probe) == 0  # an outage is transient: nothing dead-lettered


async def test_kafka_restart_loses_and_doubles_nothing(
    private_stack: Stack, probe: ServiceRuntime, settings: Settings
) -> None:
    topic = physical(CONVERSATIONS, settings)
    before, during = envelopes("k-before-", 400), envelopes("k-during-", 200)
    after, plain = envelopes("k-after-", 400), envelopes("k-plain-", 100)

    async def write_outbox(envs: list[Envelope]) -> None:
        async with probe.unit_of_work() as uow:
            for env in envs:
                uow.publish(CONVERSATIONS, env)

    async with running(probe, settings) as loops:
        await write_outbox(before)
        await reach(probe, len(before))
        restart = asyncio.create_task(asyncio.to_thread(private_stack.restart_kafka))
        await write_outbox(during)  # relayed while the broker goes down and comes back
        assert await restart == settings.kafka_bootstrap_servers  # same port, same data dir
        await write_outbox(after)
        await reach(probe, len(before) + len(during) + len(after))
        # A fresh plain producer (what a customer's pipeline would use) gets through too.
        await produce_envelopes(settings, topic, plain)
        await reach(probe, len(before) + len(during) + len(after) + len(plain))
        assert loops.alive(), "consumer or relay died across the broker restart"
    seen = await effect_counts(probe)
    assert set(seen) == {e.id for e in before + during + after + plain}
    assert max(seen.values()) == 1
    assert loops.relay.published >= len(before) + len(during) + len(after)
    assert await dead_letters(probe) == 0
