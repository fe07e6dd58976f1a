"""Exports of a huge range stream with bounded memory: the service process's peak RSS is measured."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import psutil
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from qastream_reporting.app import SPEC
from qastream_shared.events import Role
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, eventually
from qastream_shared.topics import ensure_topics

pytestmark = pytest.mark.integration
ROWS = 1_000_000
# What one export may add to the process at its peak. Building 1,000,000 review rows in memory would take
# well over a gigabyte of Python objects (and ~150 MB as CSV text alone).
BOUND = 120 * 1024 * 1024

SEED = text(
    """
    INSERT INTO reviews (tenant_id, review_id, conversation_id, kind, scorecard_id, scorecard_version, revision,
                         reviewer_id, agent_id, team, channel, score, auto_failed, passed, inclusion_probability,
                         time_spent_s, pcsat, submitted_at, day, ratings)
    SELECT :tenant, 'r' || g, 'c' || g, 'auto', 'customer-service', 1, 0, NULL, 'agent-' || (g % 50),
           'team-' || (g % 5), 'chat', (g % 100) / 100.0, g % 17 = 0, g % 3 = 0, NULL, NULL, 3.5,
           timestamptz '2026-01-01' + (g % 90) * interval '1 day', date '2026-01-01' + (g % 90), '[]'::jsonb
    FROM generate_series(1, :rows) AS g
    """
)


def peak_rss(pid: int) -> int:
    """The kernel's high-water mark of the process's resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


async def test_an_export_of_a_million_rows_streams_with_bounded_memory(settings, spawn):
    await ensure_topics(settings)
    key = await add_tenant(settings, "acme", Role.admin)
    port = free_port()
    proc = spawn(["-m", "qastream_reporting"], {"QA_HTTP_PORT": str(port)})
    headers = {"Authorization": f"Bearer {key}"}
    runtime = ServiceRuntime(SPEC, settings)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:

        async def up() -> bool:
            try:
                return (await http.get("/v1/metrics/quality", headers=headers)).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, within=90)
        async with runtime.engine.begin() as conn:
            await conn.execute(SEED, {"tenant": "acme", "rows": ROWS})
        pid = proc.popen.pid
        for fmt in ("csv", "parquet"):
            # The high-water mark after the export bounds its peak from above, whatever came before it.
            before = psutil.Process(pid).memory_info().rss
            body = io.BytesIO()
            lines = 0
            async with http.stream("GET", f"/v1/exports/reviews.{fmt}", headers=headers) as r:
                assert r.status_code == 200
                async for chunk in r.aiter_bytes():
                    if fmt == "csv":
                        lines += chunk.count(b"\n")
                    else:
                        body.write(chunk)
                    await asyncio.sleep(0)
            grown = peak_rss(pid) - before
            assert grown < BOUND, f"{fmt}: peak RSS grew {grown / 2**20:.0f} MiB during the export"
            if fmt == "csv":
                assert lines == ROWS + 1  # the header and every row
            else:
                table = pq.read_table(io.BytesIO(body.getvalue()))
                assert table.num_rows == ROWS
                assert table.column("day").type.equals(table.schema.field("day").type)
                assert (
                    abs(
                        sum(table.column("score").to_pylist())
                        - sum((g % 100) / 100 for g in range(1, ROWS + 1))
                    )
                    < 1e-3
                )
    await runtime.engine.dispose()
