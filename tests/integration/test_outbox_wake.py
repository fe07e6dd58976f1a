"""The relay wakes on each commit's NOTIFY, also on one that lands while it still publishes the rows before."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

from qastream_shared import outbox
from qastream_shared.outbox import OutboxRelay, add_rows, outbox_row
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import conversation, eventually, ingested
from qastream_shared.topics import CONVERSATIONS

pytestmark = pytest.mark.integration


async def commit_row(runtime: ServiceRuntime, settings: Settings, cid: str) -> None:
    """One outbox row committed as a service's batch commits it: with its NOTIFY."""
    row = outbox_row(CONVERSATIONS, ingested("acme", conversation(cid)), settings)
    async with runtime.sessions() as s, s.begin():
        await add_rows(s, runtime.tables["outbox"], [row], runtime.schema)


async def left(runtime: ServiceRuntime) -> int:
    """Rows not yet published (the relay marks a row once the broker has acknowledged it)."""
    async with runtime.readers() as s:
        return int(await s.scalar(text("SELECT count(*) FROM outbox WHERE published_at IS NULL")) or 0)


async def test_a_notify_while_the_relay_marks_the_rows_before_wakes_it_again(
    probe: ServiceRuntime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No poll to fall back on: only a NOTIFY wakes the relay here.
    monkeypatch.setattr(outbox, "IDLE_POLL_S", 3600.0)
    monkeypatch.setattr(outbox, "BUSY_POLL_S", 3600.0)
    relay = OutboxRelay(settings, probe.schema, "probe")
    mark = relay._mark
    marks = 0

    async def woken() -> bool:
        return relay._wake.is_set()

    async def mark_while_the_next_row_commits(conn: Any, batch: Any) -> None:
        nonlocal marks
        marks += 1
        if marks == 1:
            # The second row commits after the scan's select found the first, and its NOTIFY arrives while
            # the first is being marked, before the relay is caught up and waits.
            await commit_row(probe, settings, "second")
            await eventually(woken, within=30)
        await mark(conn, batch)

    async def both_published() -> bool:
        return marks == 2 and await left(probe) == 0

    monkeypatch.setattr(relay, "_mark", mark_while_the_next_row_commits)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await commit_row(probe, settings, "first")
        await eventually(both_published, within=30)
    finally:
        stop.set()
        relay.wake()
        await asyncio.wait_for(task, 30)
