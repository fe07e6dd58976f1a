"""Helpers for integration tests and benchmarks against a real broker and database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from qastream_shared.conversation import Conversation
from qastream_shared.db import create_engine, drop_schema, ensure_schema
from qastream_shared.events import (
    ApiKeyIssued,
    ApiKeyRevoked,
    ConversationIngested,
    Envelope,
    Role,
    TenantUpserted,
    conversation_key,
    encode,
)
from qastream_shared.keys import IssuedKey, generate_key
from qastream_shared.settings import Settings
from qastream_shared.topics import TENANTS, physical

T = TypeVar("T")
DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "conversations"
STAR = DATA_DIR / "star.jsonl"


def isolated_settings(database_url: str, kafka_bootstrap: str, **overrides: Any) -> Settings:
    """Settings with a unique topic prefix and schema, so tests never see each other's data."""
    run = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "database_url": database_url,
        "kafka_bootstrap_servers": kafka_bootstrap,
        "topic_prefix": f"t{run}.",
        "db_schema": f"t_{run}",
        "log_json": False,
        "consumer_batch_timeout_ms": 50,
    }
    values.update(overrides)
    settings = Settings(**values)
    ISSUED.append(settings)
    return settings


@asynccontextmanager
async def schema_with_tables(settings: Settings, *tables: Table) -> AsyncIterator[AsyncEngine]:
    """An engine on the settings' own schema holding just `tables`, for a test of one store's SQL without a
    service's migrations; the schema is dropped on the way out."""
    schema = settings.db_schema
    if not schema:  # never the shared public schema: it is dropped at the end
        raise ValueError("schema_with_tables needs settings with their own db_schema")
    engine = create_engine(settings, schema)
    await ensure_schema(engine, schema)
    try:
        async with engine.begin() as conn:
            for table in tables:
                await conn.run_sync(table.create)
        yield engine
    finally:
        await drop_schema(engine, schema)
        await engine.dispose()


# Every isolated_settings() of this process, so a test session can drop what it created (drop_isolated).
ISSUED: list[Settings] = []


async def drop_isolated(issued: list[Settings]) -> list[str]:
    """Drops the schemas (and schemas derived from them, e.g. `<schema>_b`) and the topics of `issued`.

    Best effort, for cleanup: returns what could not be dropped (e.g. a private stack already gone). One
    connection and one topic deletion per pair of servers: a session issues hundreds of settings, and one
    engine and admin client each took a tenth of a second.
    """
    servers: dict[tuple[str, str], tuple[Settings, set[str], set[str]]] = {}
    for s in issued:
        if s.db_schema and s.topic_prefix:
            _, schemas, prefixes = servers.setdefault(
                (s.database_url, s.kafka_bootstrap_servers), (s, set(), set())
            )
            schemas.add(s.db_schema)
            prefixes.add(s.topic_prefix)
    failed: list[str] = []
    for first, schemas, prefixes in servers.values():
        try:
            await _drop_on(first, schemas, prefixes)
        except Exception as exc:  # cleanup: report and go on
            failed.append(f"{', '.join(sorted(schemas))[:200]}: {exc!r}")
    return failed


async def _drop_on(first: Settings, schemas: set[str], prefixes: set[str]) -> None:
    """Drops `schemas` (with those derived from them) and the topics under `prefixes` on `first`'s servers."""
    engine = create_engine(first, "public")
    try:
        async with engine.connect() as conn:
            likes = sorted(schema.replace("_", r"\_") + "%" for schema in schemas)
            query = text("SELECT nspname FROM pg_namespace WHERE nspname LIKE ANY(:likes)")
            found = list((await conn.execute(query, {"likes": likes})).scalars())
        for schema in found:
            await drop_schema(engine, schema)
    finally:
        await engine.dispose()
    starts = tuple(prefixes)
    admin = AIOKafkaAdminClient(bootstrap_servers=first.kafka_bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:

        async def listed() -> list[str]:
            return [t for t in await admin.list_topics() if t.startswith(starts)]

        ours = await listed()
        if ours:
            await admin.delete_topics(ours)

            # The controller answers once the deletion is recorded; the broker's metadata, which
            # list_topics reads, follows a moment later. Dropped means no longer listed.
            async def gone() -> bool:
                return not await listed()

            await eventually(gone, within=30.0)
    finally:
        await admin.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process the same settings."""
    env = {
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "QA_TOPIC_PREFIX": settings.topic_prefix,
        "QA_LOG_JSON": "false",
        "QA_CONSUMER_BATCH_TIMEOUT_MS": str(settings.consumer_batch_timeout_ms),
    }
    if settings.db_schema:
        env["QA_DB_SCHEMA"] = settings.db_schema
    return env


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, within: float = 60.0, every: float = 0.1
) -> T:
    """Awaits until `check()` returns a truthy value; fails with the last value after `within` seconds."""
    deadline = time.monotonic() + within
    last: T | None = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value {last!r}")
        await asyncio.sleep(every)


def star_records(limit: int | None = None) -> Iterator[dict[str, Any]]:
    with STAR.open("rb") as fh:
        for i, line in enumerate(fh):
            if limit is not None and i >= limit:
                return
            yield orjson.loads(line)


def conversation(
    conversation_id: str | None = None, *, agent: str = "agent-1", turns: int = 4, **extra: Any
) -> Conversation:
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    return Conversation.model_validate(
        {
            "conversation_id": conversation_id or uuid.uuid4().hex,
            "agent_ids": [agent],
            "team": "team-a",
            "turns": [
                {
                    "role": "customer" if i % 2 == 0 else "agent",
                    "text": "Hello, I need help with my order" if i % 2 == 0 else "Happy to help, one moment",
                    "ts": (start + timedelta(seconds=30 * i)).isoformat(),
                }
                for i in range(turns)
            ],
            **extra,
        }
    )


def ingested(tenant: str, conv: Conversation, source: str = "ingest") -> Envelope:
    return Envelope(
        data=ConversationIngested(conversation=conv, ingested_at=datetime.now(UTC)),
        source=source,
        tenant=tenant,
        key=conversation_key(tenant, conv.conversation_id),
        subject=conv.conversation_id,
    )


async def produce(
    settings: Settings, topic: str, records: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, headers=h) for k, v, h in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_envelopes(settings: Settings, topic: str, envs: list[Envelope]) -> None:
    await produce(settings, topic, [encode(e) for e in envs])


async def publish_tenant_keys(
    settings: Settings, tenant: str, keys: Sequence[tuple[Role, dict[str, str]]]
) -> list[IssuedKey]:
    """The tenant and one key per (role, agent_id/team fields) on qa.tenants, as ingest publishes them: how
    tests and benchmarks give a service other than ingest a tenant it knows."""
    issued = [generate_key(settings.key_pepper) for _ in keys]
    envs = [
        Envelope(
            data=TenantUpserted(tenant_id=tenant, name=tenant), source="ingest", tenant=tenant, key=tenant
        )
    ]
    envs += [
        Envelope(
            data=ApiKeyIssued(key_id=i.key_id, key_hash=i.key_hash, role=role, **fields),
            source="ingest",
            tenant=tenant,
            key=f"{tenant}:key:{i.key_id}",
        )
        for i, (role, fields) in zip(issued, keys, strict=True)
    ]
    await produce_envelopes(settings, physical(TENANTS, settings), envs)
    return issued


async def revoke_key(settings: Settings, tenant: str, key_id: str) -> None:
    """ApiKeyRevoked on qa.tenants, as ingest publishes it when an admin revokes the key."""
    revoked = Envelope(
        data=ApiKeyRevoked(key_id=key_id), source="ingest", tenant=tenant, key=f"{tenant}:key:{key_id}"
    )
    await produce_envelopes(settings, physical(TENANTS, settings), [revoked])


async def add_tenant(settings: Settings, tenant: str, role: Role = Role.admin, **key_fields: str) -> str:
    """The tenant and one key (returned) with `role` and its agent_id/team fields."""
    return (await publish_tenant_keys(settings, tenant, [(role, key_fields)]))[0].key


async def read_topic(
    settings: Settings, topic: str, *, expect: int, within: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Reads a topic from the beginning until at least `expect` records arrived, and every record after them
    that is already there; fails, naming the count, if fewer than `expect` arrived `within` seconds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + within
        while len(out) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for recs in batch.values():
                out.extend(recs)
        # Drain what is left so callers also see duplicates beyond `expect`.
        ends = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for recs in batch.values():
                out.extend(recs)
        if len(out) < expect:
            raise AssertionError(f"{topic}: {len(out)} records within {within} s, expected at least {expect}")
        return out
    finally:
        await consumer.stop()
