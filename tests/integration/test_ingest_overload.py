"""Ingest under unlimited concurrent posts, with PostgreSQL refusing connections beyond a small limit: every
post is accepted or told to come back (503 with Retry-After), never a 500.

PostgreSQL's "too many connections" (SQLSTATE 53300) is what a burst meets when the server's or the role's
connection limit is reached before the service's own pool is full (the soak's one 500 from ingest, with
several pipelines on one server). Reproduced with a login role of its own limited to four connections."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from qastream_ingest import service as ingest_service
from qastream_ingest.app import SPEC as INGEST
from qastream_shared.events import Role
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from tests.integration.conftest import Proc
from tests.integration.conftest_ingest import LiveIngest, star_stream, take

pytestmark = pytest.mark.integration

POSTS = 40


async def test_concurrent_posts_past_the_connection_limit_are_503_not_500(settings: Settings) -> None:
    runtime = ServiceRuntime(INGEST, settings)
    await migrate(settings, runtime.schema, INGEST.migrations)
    try:
        async with runtime.unit_of_work() as uow:
            await ingest_service.create_tenant(uow, "burst", "Burst")
            _, key = await ingest_service.create_key(uow, "burst", Role.admin)
    finally:
        await runtime.engine.dispose()

    role = f"qa_limited_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.asyncpg_dsn)
    owner = await admin.fetchval("SELECT current_user")
    # A member of the owning role: the same privileges, but at most four connections at a time.
    await admin.execute(f'CREATE ROLE {role} LOGIN CONNECTION LIMIT 4 IN ROLE "{owner}"')
    limited = settings.model_copy(
        update={"database_url": make_url(settings.database_url).set(username=role).render_as_string(False)}
    )
    ingest = LiveIngest(lambda args, env: Proc(args, limited, env))
    try:
        await ingest.start(within=180)
        stream = star_stream("burst")
        async with httpx.AsyncClient(
            base_url=ingest.url, timeout=120, headers={"Authorization": f"Bearer {key}"}
        ) as http:

            async def post(batch: list[dict[str, Any]]) -> httpx.Response:
                return await http.post("/v1/conversations", json={"conversations": batch})

            answers = await asyncio.gather(*(post(take(stream, 20)) for _ in range(POSTS)))
        statuses = [r.status_code for r in answers]
        assert set(statuses) <= {202, 503}, [
            (r.status_code, r.text[:300]) for r in answers if r.status_code >= 500
        ]
        refused = [r for r in answers if r.status_code == 503]
        assert refused, "not vacuous: the burst must have met the connection limit"
        assert all(r.headers.get("retry-after") == "1" for r in refused)
        assert all("database" in r.json()["detail"] for r in refused)
    finally:
        ingest.stop()
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()
