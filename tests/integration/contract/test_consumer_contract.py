"""Every service's consumer keeps the same contract, on the real broker and database:

invalid record → dead-lettered with its reason, and the partition keeps flowing; redelivery → no second
effect; a transient database error → retried, not skipped; a stop mid-batch → nothing committed early.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import insert, text

from qastream_shared.consumer import BatchConsumer
from qastream_shared.events import Envelope, TenantUpserted, conversation_key, encode
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import eventually, produce, read_topic
from qastream_shared.topics import dlq, dlq_topic, ensure_topics, physical
from qastream_shared.unit_of_work import Handler, UnitOfWork
from tests.integration.contract.cases import CASES, ContractCase

pytestmark = pytest.mark.integration

TENANT = "contract"


@dataclass
class Service:
    case: ContractCase
    runtime: ServiceRuntime
    settings: Settings

    @property
    def topic(self) -> str:
        return physical(self.case.topic, self.settings)

    async def effects(self, tenant: str = TENANT) -> int:
        return await self.case.effects(self.runtime, tenant)

    @contextlib.asynccontextmanager
    async def consuming(
        self, wrap: Callable[[Handler], Handler] | None = None, group_id: str | None = None
    ) -> AsyncIterator[tuple[BatchConsumer, asyncio.Event]]:
        consumer = self.runtime.batch_consumer()
        if wrap is not None:
            consumer.handler = wrap(consumer.handler)
        if group_id is not None:
            consumer.group_id = group_id
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            yield consumer, stop
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)


@pytest.fixture(params=CASES, ids=lambda c: c.id)
async def service(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Service]:
    case: ContractCase = request.param
    runtime = ServiceRuntime(case.spec, settings)
    await migrate(settings, runtime.schema, case.spec.migrations)
    await ensure_topics(settings, extra=[dlq_topic(case.spec.name)])
    async with runtime.sessions() as s, s.begin():
        await s.execute(insert(runtime.tables["tenants"]).values(tenant_id=TENANT, name=TENANT))
    stop = asyncio.Event()
    loops = [asyncio.create_task(runtime.relay.run(stop))]
    if runtime.directory is not None:
        loops.append(asyncio.create_task(runtime.directory.run(stop)))
    yield Service(case, runtime, settings)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*loops), 30)
    await runtime.engine.dispose()


def _same_partition(env: Envelope, key: str) -> Envelope:
    env.key = key
    return env


async def test_invalid_records_are_dead_lettered_with_reasons_and_the_partition_flows(
    service: Service,
) -> None:
    key = conversation_key(TENANT, "c-flow")
    k = key.encode()
    wrong_type = Envelope(data=TenantUpserted(tenant_id=TENANT, name="x"), source="t", tenant=TENANT, key=key)
    records = [
        encode(_same_partition(service.case.event(TENANT, "c-before"), key)),
        (k, b"\xff not an event", [("content-type", b"application/json")]),
        (k, b"{}", [(h, v) for h, v in encode(service.case.event(TENANT, "c-bad"))[2] if h != "ce_tenant"]),
        encode(wrong_type),
        encode(_same_partition(service.case.event("no-such-tenant", "c-stranger"), key)),
        encode(_same_partition(service.case.event(TENANT, "c-after"), key)),
    ]
    await produce(service.settings, service.topic, records)
    async with service.consuming():
        await eventually(lambda: _at_least(service, 2), within=90)
        dead = await read_topic(
            service.settings, physical(dlq(service.case.spec.name), service.settings), expect=4
        )
    reasons = sorted(dict(r.headers)["dlq_reason"].decode() for r in dead)
    assert len(reasons) == 4, reasons
    assert any("ce_type" in r for r in reasons)  # not a CloudEvent
    assert any("ce_tenant" in r for r in reasons)
    assert any(TenantUpserted.TYPE in r and "does not belong" in r for r in reasons)
    assert any("unknown tenant 'no-such-tenant'" in r for r in reasons)
    for r in dead:  # the original record's coordinates travel with it
        h = dict(r.headers)
        assert (
            h["dlq_topic"].decode() == service.topic and h["dlq_service"].decode() == service.case.spec.name
        )
    assert await service.effects() == 2  # the events on either side of the bad ones, each once
    assert await service.effects("no-such-tenant") == 0


async def test_redelivery_has_no_second_effect(service: Service) -> None:
    env = service.case.event(TENANT, "c-once")
    await produce(service.settings, service.topic, [encode(env), encode(env)])  # a producer retry
    async with service.consuming():
        await eventually(lambda: _at_least(service, 1), within=60)
    # A new reader of the whole log (as after lost offsets) gets every record again.
    group = f"{service.settings.topic_prefix}redelivery"
    async with service.consuming(group_id=group):
        await eventually(lambda: _read_to_the_end(service, group), within=60)
    assert await service.effects() == 1


async def test_a_transient_database_error_is_retried_not_skipped(service: Service) -> None:
    calls = 0

    def killing_the_connection_twice(handler: Handler) -> Handler:
        async def handle(uow: UnitOfWork, events: list[Envelope]) -> None:
            nonlocal calls
            calls += 1
            if calls <= 2:
                # A real lost connection: PostgreSQL ends this transaction's backend under it.
                await uow.session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            await handler(uow, events)

        return handle

    await produce(service.settings, service.topic, [encode(service.case.event(TENANT, "c-retried"))])
    async with service.consuming(killing_the_connection_twice):
        await eventually(lambda: _at_least(service, 1), within=90)
    assert calls == 3
    assert await service.effects() == 1


async def test_a_stop_mid_batch_commits_nothing_early(service: Service) -> None:
    entered = asyncio.Event()
    stopping: asyncio.Event | None = None

    def held_until_stop(handler: Handler) -> Handler:
        async def handle(uow: UnitOfWork, events: list[Envelope]) -> None:
            entered.set()
            assert stopping is not None
            await stopping.wait()
            await uow.session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            await handler(uow, events)

        return handle

    await produce(service.settings, service.topic, [encode(service.case.event(TENANT, "c-held"))])
    async with service.consuming(held_until_stop) as (consumer, stop):
        stopping = stop
        await asyncio.wait_for(entered.wait(), 60)
    assert await service.effects() == 0
    assert await _committed(service, consumer.group_id) == {}
    async with service.consuming():  # the same group starts where nothing was committed
        await eventually(lambda: _at_least(service, 1), within=60)
    assert await service.effects() == 1


async def _at_least(service: Service, n: int) -> bool:
    return await service.effects() >= n


async def _read_to_the_end(service: Service, group_id: str) -> bool:
    """The group has committed past every record produced in the test (its topics are the test's own)."""
    return sum((await _committed(service, group_id)).values()) == 2


async def _committed(service: Service, group_id: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=service.settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {
        tp.partition: o.offset for tp, o in offsets.items() if tp.topic == service.topic and o.offset >= 0
    }
