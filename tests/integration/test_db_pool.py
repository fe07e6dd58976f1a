"""Pooled connections are not pinged before each use (db.create_engine): a connection PostgreSQL has ended
since it was pooled costs no request. It is dropped at checkout when asyncpg already saw it close, and
otherwise the request that meets it is run again on a fresh one (http.RetryDeadConnection)."""

from __future__ import annotations

import asyncpg
import pytest

from qastream_shared.events import Role
from qastream_shared.settings import Settings
from qastream_shared.testing import eventually
from qastream_shared.topics import ensure_topics
from tests.integration.review_workflow import in_process, issue_keys, wait_for_key

pytestmark = pytest.mark.integration


async def backends(settings: Settings) -> set[int]:
    conn = await asyncpg.connect(settings.asyncpg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", f"qastream:{settings.db_schema}"
        )
        return {r["pid"] for r in rows}
    finally:
        await conn.close()


async def terminate(settings: Settings, pids: set[int]) -> None:
    conn = await asyncpg.connect(settings.asyncpg_dsn)
    try:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(pids))
    finally:
        await conn.close()


async def test_requests_after_the_server_ended_every_pooled_connection_succeed(settings: Settings) -> None:
    await ensure_topics(settings)
    keys = await issue_keys(settings, "acme", {"admin": (Role.admin, {"agent_id": "adm"})})
    # A short auth cache TTL, so some requests below also read their key on a pooled connection.
    async with in_process(settings.model_copy(update={"auth_cache_ttl_s": 0.0})) as http:
        admin = keys.auth("admin")
        await wait_for_key(http, admin)
        for _ in range(3):  # every connection the app holds, then each request's first statement, dead
            before = await backends(settings)
            assert before
            await terminate(settings, before)
            statuses = [
                (await http.get("/v1/reviewers", headers=admin)).status_code,
                (await http.put("/v1/reviewers", json={"reviewers": []}, headers=admin)).status_code,
                (await http.get("/v1/assignments", headers=admin)).status_code,
            ]
            assert statuses == [200, 200, 200]

            async def replaced(ended: set[int] = before) -> bool:
                now = await backends(settings)
                return bool(now) and not now & ended

            await eventually(replaced, within=30)
