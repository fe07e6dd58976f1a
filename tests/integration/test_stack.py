"""The real broker and database the fixtures hand out, and the launcher's control over them."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import asyncpg
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner

from qastream_shared.cli import app
from qastream_shared.stack import Stack

pytestmark = pytest.mark.integration


async def _new_topic(bootstrap: str) -> str:
    name = f"test.stack.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _consume_one(bootstrap: str, topic: str) -> bytes | None:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=f"g-{uuid.uuid4().hex}"
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=15_000, max_records=1)
        return next((r.value for records in batch.values() for r in records), None)
    finally:
        await consumer.stop()


async def test_broker_roundtrip(kafka_bootstrap: str) -> None:
    topic = await _new_topic(kafka_bootstrap)
    await _produce(kafka_bootstrap, topic, b"hello")
    assert await _consume_one(kafka_bootstrap, topic) == b"hello"


async def test_postgres_answers(database_url: str) -> None:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        assert await conn.fetchval("SELECT current_database()") == "qastream"
    finally:
        await conn.close()


async def test_kafka_restart_keeps_records(owned_kafka: Stack, kafka_bootstrap: str) -> None:
    topic = await _new_topic(kafka_bootstrap)
    await _produce(kafka_bootstrap, topic, b"before restart")
    assert owned_kafka.restart_kafka() == kafka_bootstrap
    assert await _consume_one(kafka_bootstrap, topic) == b"before restart"


async def test_postgres_stop_start(owned_postgres: Stack, database_url: str) -> None:
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    assert owned_postgres.stop_postgres()
    with pytest.raises(OSError):
        await asyncpg.connect(dsn)
    assert owned_postgres.start_postgres() == database_url
    conn = await asyncpg.connect(dsn)
    await conn.close()


def test_status_names_components(
    stack: Stack, kafka_bootstrap: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("DATABASE_URL", database_url)
    recorded = Stack(tmp_path)
    recorded.ensure_kafka()
    recorded.ensure_postgres()
    result = CliRunner().invoke(app, ["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert re.search(r"postgres .* external", result.output)
    assert re.search(r"kafka .* external", result.output)
    if stack.owns_kafka(kafka_bootstrap):
        result = CliRunner().invoke(app, ["status", "--state-dir", str(stack.state_dir)])
        assert re.search(r"kafka .* yes", result.output), result.output


def test_status_without_stack(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "qa up" in " ".join(result.output.split())  # rich wraps to the terminal width


FAKE_SERVICE = """
import http.server, os
http.server.HTTPServer(("127.0.0.1", int(os.environ["QA_HTTP_PORT"])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_services_start_skip_and_stop(
    kafka_bootstrap: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "src" / "qastream_fake"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(FAKE_SERVICE)
    monkeypatch.syspath_prepend(str(pkg.parent))
    monkeypatch.setenv("PYTHONPATH", str(pkg.parent))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("DATABASE_URL", database_url)
    stack = Stack(tmp_path / "state")
    stack.ensure_kafka()
    stack.ensure_postgres()

    urls = stack.start_services(["fake", "nonexistent"])
    assert list(urls) == ["fake"]
    fake = next(s for s in stack.status() if s.name == "fake")
    assert fake.alive and fake.pid is not None
    assert stack.start_services(["fake"]) == urls  # idempotent: the running one is reused
    assert next(s for s in stack.status() if s.name == "fake").pid == fake.pid

    assert stack.stop_services() == ["fake"]
    assert not psutil.pid_exists(fake.pid) or psutil.Process(fake.pid).status() == psutil.STATUS_ZOMBIE
    assert stack.log_path("fake").exists()
