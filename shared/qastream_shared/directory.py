"""The tenant directory: every service's local copy of qa.tenants (tenants and API keys).

It is read like a global table: all partitions, from the beginning, no consumer group. Upserts are
idempotent because each event carries the final state of its row. Handlers that meet an unknown tenant
call `wait_caught_up()` first, so a tenant created a moment ago is not mistaken for an unknown one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from qastream_shared.auth import KeyCache
from qastream_shared.events import ApiKeyIssued, ApiKeyRevoked, InvalidEvent, TenantUpserted, decode
from qastream_shared.settings import Settings
from qastream_shared.topics import TENANTS, physical

log = logging.getLogger(__name__)


async def apply_directory_event(
    session: AsyncSession, tables: dict[str, Table], tenant: str, data: Any
) -> None:
    if isinstance(data, TenantUpserted):
        t = tables["tenants"]
        stmt = pg_insert(t).values(
            tenant_id=data.tenant_id, name=data.name, retention_days=data.retention_days
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.c.tenant_id],
                set_={"name": data.name, "retention_days": data.retention_days},
            )
        )
    elif isinstance(data, ApiKeyIssued):
        k = tables["api_keys"]
        values = {
            "key_id": data.key_id,
            "tenant_id": tenant,
            "key_hash": data.key_hash,
            "role": data.role.value,
            "agent_id": data.agent_id,
            "team": data.team,
        }
        await session.execute(pg_insert(k).values(**values).on_conflict_do_nothing())
    elif isinstance(data, ApiKeyRevoked):
        k = tables["api_keys"]
        await session.execute(
            update(k)
            .where(k.c.key_id == data.key_id, k.c.tenant_id == tenant, k.c.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )


class TenantDirectory:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        tables: dict[str, Table],
        key_cache: KeyCache | None = None,
    ):
        self.settings = settings
        # Revoked keys are dropped from the replica's auth cache as soon as their revocation is stored.
        self.key_cache = key_cache
        self.sessions = sessions
        self.tables = tables
        self.topic = physical(TENANTS, settings)
        self._consumer: AIOKafkaConsumer | None = None
        self._progress = asyncio.Condition()
        self._applied: dict[TopicPartition, int] = {}
        self._known: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self.topic) or set()
            while not partitions and not stop.is_set():
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._consumer = consumer
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                records = [r for recs in batch.values() for r in recs]
                if records:
                    try:
                        await self._apply(records)
                    except DBAPIError as exc:
                        # A pooled connection that died since its last use (pools are not pinged, db.py):
                        # the pool is invalidated now, and applying is idempotent, so once more.
                        if not exc.connection_invalidated:
                            raise
                        await self._apply(records)
                    for tp, recs in batch.items():
                        self._applied[tp] = recs[-1].offset + 1
                async with self._progress:
                    self._progress.notify_all()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _apply(self, records: list[Any]) -> None:
        revoked: list[str] = []
        async with self.sessions() as session, session.begin():
            for r in records:
                try:
                    env = decode(r.key, r.value, r.headers)
                except InvalidEvent as exc:
                    log.warning(
                        "ignoring invalid tenant-directory record at offset %d: %s", r.offset, exc.reason
                    )
                    continue
                await apply_directory_event(session, self.tables, env.tenant, env.data)
                if isinstance(env.data, ApiKeyRevoked):
                    revoked.append(env.data.key_id)
        if self.key_cache is not None:
            for key_id in revoked:
                self.key_cache.forget(key_id)

    async def wait_caught_up(self, within: float = 30.0) -> None:
        """Returns once everything on qa.tenants up to now is applied locally."""

        async def caught_up() -> None:
            while self._consumer is None:
                async with self._progress:
                    await self._progress.wait()
            consumer = self._consumer
            tps = list(consumer.assignment())
            ends = await consumer.end_offsets(tps)
            async with self._progress:
                while any(self._applied.get(tp, 0) < ends[tp] for tp in tps):
                    await self._progress.wait()

        await asyncio.wait_for(caught_up(), within)

    async def unknown(self, session: AsyncSession, tenant_ids: set[str]) -> set[str]:
        """The tenants of `tenant_ids` that do not exist, after catching up with qa.tenants if any seem new.

        Tenants are never deleted, so the ones found are remembered for the process's life.
        """
        missing = tenant_ids - self._known
        if missing:
            missing -= await self._found(session, missing)
        if missing:
            await self.wait_caught_up()
            missing -= await self._found(session, missing)
        return missing

    async def _found(self, session: AsyncSession, tenant_ids: set[str]) -> set[str]:
        found = await existing_tenants(session, self.tables["tenants"], tenant_ids)
        self._known |= found
        return found


class OwnTenants:
    """The tenant lookup of the service that owns the tenants table (ingest): what it holds is the truth,
    so there is no topic to catch up with."""

    def __init__(self, tenants: Table) -> None:
        self.tenants = tenants

    async def unknown(self, session: AsyncSession, tenant_ids: set[str]) -> set[str]:
        return tenant_ids - await existing_tenants(session, self.tenants, tenant_ids)


async def existing_tenants(session: AsyncSession, tenants: Table, tenant_ids: set[str]) -> set[str]:
    # A NUL would fail the whole query (PostgreSQL text cannot hold one); no tenant has it.
    wanted = [x for x in tenant_ids if "\x00" not in x]
    if not wanted:
        return set()
    query = select(tenants.c.tenant_id).where(tenants.c.tenant_id.in_(wanted))
    return set((await session.execute(query)).scalars())
