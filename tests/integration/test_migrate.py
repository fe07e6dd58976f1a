"""`qa migrate`, the one-shot job before a deploy: migrations and topics, idempotent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text

from qastream_shared.db import create_engine
from qastream_shared.services import app_module
from qastream_shared.testing import settings_env
from qastream_shared.topics import REGISTRY, dlq, physical

pytestmark = pytest.mark.integration


def qa_migrate(settings, *names: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings), "QA_TOPIC_PARTITIONS": "5"}
    return subprocess.run(
        [sys.executable, "-m", "qastream_shared.cli", "migrate", *names],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


async def test_migrate_creates_schema_and_topics_and_is_idempotent(settings):
    first = await asyncio.to_thread(qa_migrate, settings, "scoring")
    assert first.returncode == 0, first.stdout + first.stderr
    again = await asyncio.to_thread(qa_migrate, settings, "scoring")
    assert again.returncode == 0, again.stdout + again.stderr

    engine = create_engine(settings, settings.db_schema or "scoring")
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    finally:
        await engine.dispose()
    assert len(version) == 1  # at head once, not twice
    assert app_module("scoring").SPEC.tables["reviews"] is not None

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        names = [physical(t.name, settings) for t in REGISTRY]
        described = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(names)}
    finally:
        await admin.close()
    for t in REGISTRY:
        assert described[physical(t.name, settings)] == (5 if t.partitions > 1 else 1), t.name
    assert physical(dlq("scoring"), settings) in described


async def test_migrate_refuses_an_unknown_service(settings):
    out = await asyncio.to_thread(qa_migrate, settings, "nosuch")
    assert out.returncode == 2 and "nosuch" in out.stdout
