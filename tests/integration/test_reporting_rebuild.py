"""Rebuild by replay: the fresh tables equal the live ones table by table, reads keep working throughout,
and the live service keeps projecting into the swapped-in tables."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_reporting.app import SPEC
from qastream_reporting.deltas import compact
from qastream_reporting.rebuild import rebuild, swap_key
from qastream_reporting.tables import PROJECTED, tables
from qastream_shared import events as ev
from qastream_shared.db import create_engine
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, eventually
from qastream_shared.topics import REVIEWS, ensure_topics
from tests.integration.reporting_stream import CATEGORIES, Stream, build, publish

pytestmark = pytest.mark.integration


def normalised(rows: list[Any]) -> list[tuple[Any, ...]]:
    """Rows as comparable tuples: floats rounded (sums added in another order differ in the last bits)."""
    out = []
    for r in rows:
        out.append(tuple(round(v, 9) if isinstance(v, float) and math.isfinite(v) else v for v in r))
    return sorted(out, key=repr)


def rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 9) if isinstance(v, float) else v for k, v in figures.items()}


async def table_rows(engine, schema: str, name: str) -> list[tuple[Any, ...]]:
    cols = ", ".join(c.name for c in tables[name].columns if c.name not in ("projected_at",))
    async with engine.connect() as conn:
        return normalised(list(await conn.execute(text(f'SELECT {cols} FROM "{schema}".{name}'))))


async def test_rebuild_equals_live_table_by_table_and_reads_keep_working(settings, spawn):
    await ensure_topics(settings)
    key = await add_tenant(settings, "acme")
    stream = build("acme", seed=3, conversations=60)
    await publish(settings, stream)
    port = free_port()
    spawn(["-m", "qastream_reporting"], {"QA_HTTP_PORT": str(port), "QA_CONSUMER_BATCH_SIZE": "50"})
    runtime = ServiceRuntime(SPEC, settings)
    expected = len(stream.all())

    async def projected(n: int) -> bool:
        try:
            async with runtime.sessions() as s:
                return (await s.execute(text("SELECT count(*) FROM inbox"))).scalar_one() >= n
        except Exception:
            return False  # not migrated yet

    await eventually(lambda: projected(expected), within=120)
    headers = {"Authorization": f"Bearer {key}"}
    compared: dict[str, int] = {}
    engine = create_engine(settings, "public", pool_size=2)

    async def compare(live: str, fresh: str) -> None:
        # Live's rollup deltas folded as the rebuild's were: the rows then compare one to one.
        live_engine = create_engine(settings, live, pool_size=1)
        async with live_engine.begin() as conn:
            await compact(AsyncSession(bind=conn))
        await live_engine.dispose()
        for name in PROJECTED:
            if name == "freshness":
                continue  # when each was projected differs by construction
            a, b = await table_rows(engine, live, name), await table_rows(engine, fresh, name)
            assert a == b, f"{name}: live has {len(a)} rows, the rebuild {len(b)}; first difference " + repr(
                next(((x, y) for x, y in zip(a, b, strict=False) if x != y), None)
            )
            compared[name] = len(a)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        before = (await http.get("/v1/metrics/quality", headers=headers)).json()["items"][0]
        statuses: list[int] = []
        done = asyncio.Event()

        async def read_meanwhile() -> None:
            while not done.is_set():
                statuses.append((await http.get("/v1/metrics/quality", headers=headers)).status_code)
                await asyncio.sleep(0.05)

        reader = asyncio.create_task(read_meanwhile())
        seen: list[tuple[int, int]] = []
        try:
            result = await rebuild(
                SPEC, settings, progress=lambda d, t: seen.append((d, t)), before_swap=compare
            )
        finally:
            done.set()
            await reader
        assert result.schema == settings.db_schema
        assert (
            compared["reviews"] > 0 and compared["score_rollup"] > 0 and compared["conversation_rollup"] > 0
        )
        assert set(compared) == set(PROJECTED) - {"freshness"}
        assert statuses and set(statuses) == {200}  # reads kept working through the replay and the swap
        assert seen[-1][0] == seen[-1][1] > 0
        after = (await http.get("/v1/metrics/quality", headers=headers)).json()["items"][0]
        assert rounded(after) == rounded(before)  # the same sums, added in another order

        # The live service keeps projecting, now into the swapped-in tables.
        extra = Stream("acme")
        now = datetime.now(UTC)
        extra.add(
            REVIEWS,
            ev.ReviewSubmitted(
                review_id="after-swap",
                conversation_id="acme-new",
                kind=ev.ReviewKind.auto,
                scorecard_id="cs",
                scorecard_version=1,
                ratings=[ev.Rating(category_id=c, value=1, score=1.0) for c in CATEGORIES],
                score=1.0,
                passed=True,
                team="team-a",
                agent_id="agent-1",
                channel="chat",
                submitted_at=now - timedelta(seconds=1),
            ),
            "acme-new",
        )
        await publish(settings, extra)

        async def counted() -> bool:
            r = await http.get("/v1/metrics/quality", headers=headers)
            return r.status_code == 200 and r.json()["items"][0]["reviews"] == before["reviews"] + 1

        await eventually(counted, within=60)
    await engine.dispose()
    await runtime.engine.dispose()


async def test_a_live_batch_waits_while_the_swap_lock_is_held(settings, spawn):
    """What the swap relies on: with the lock held exclusively (as `rebuild` holds it to swap), a live batch
    waits at its first statement, before claiming anything, and goes on once the lock is released."""
    await ensure_topics(settings)
    await add_tenant(settings, "acme")
    stream = build("acme", seed=5, conversations=4)
    await publish(settings, stream)
    spawn(["-m", "qastream_reporting"], {"QA_HTTP_PORT": str(free_port())})
    runtime = ServiceRuntime(SPEC, settings)
    schema = runtime.schema

    async def inbox() -> int:
        try:
            async with runtime.sessions() as s:
                return int((await s.execute(text("SELECT count(*) FROM inbox"))).scalar_one())
        except ProgrammingError:
            return 0  # not migrated yet: no inbox table

    first = len(stream.all())
    await eventually(lambda: _at_least(inbox, first), within=120)
    key = swap_key(schema)
    # How pg_locks shows a bigint advisory key: its high and low 32 bits, unsigned.
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    engine = create_engine(settings, "public", pool_size=2)
    async with engine.connect() as lock:
        await lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        await lock.commit()
        extra = build("acme", seed=6, conversations=1)
        await publish(settings, extra)

        async def waiting() -> bool:
            async with engine.connect() as conn:
                found = await conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                        " AND classid = :high AND objid = :low AND objsubid = 1"
                    ),
                    {"high": high, "low": low},
                )
                return int(found.scalar_one()) > 0

        await eventually(waiting, within=60)
        assert await inbox() == first  # the waiting batch has claimed nothing
        await lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        await lock.commit()
    await eventually(lambda: _at_least(inbox, first + len(extra.all())), within=60)
    await engine.dispose()
    await runtime.engine.dispose()


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n
