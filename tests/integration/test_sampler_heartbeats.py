"""Ingest's partition heartbeats on the real broker: a partition that never receives a conversation still lets
the sampler's watermark pass, so a quota period closes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka.partitioner import murmur2

from qastream_ingest import service as ingest_service
from qastream_ingest.app import SPEC as INGEST
from qastream_shared.events import PartitionHeartbeat, Role, conversation_key, decode
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import eventually, read_topic
from qastream_shared.topics import CONVERSATIONS, REGISTRY, ensure_topics, partitions_of, physical
from tests.integration.live_service import LiveService
from tests.integration.test_sampler import conv

pytestmark = pytest.mark.integration

TENANT = "hb"
DAY = datetime(2025, 3, 3, tzinfo=UTC)
QUOTA = 2
PLAN = {"plan_id": "daily", "kind": "stratified", "by": "team", "quota": QUOTA, "period": "day"}


def on_partition(n: int, partition: int, partitions: int) -> list[str]:
    """`n` conversation ids whose key the default partitioner sends to `partition`."""
    ids: list[str] = []
    i = 0
    while len(ids) < n:
        cid = f"hb{i:05d}"
        key = conversation_key(TENANT, cid).encode()
        if (murmur2(key) & 0x7FFFFFFF) % partitions == partition:
            ids.append(cid)
        i += 1
    return ids


async def test_an_idle_partition_still_lets_a_period_close(settings: Settings, spawn: Any) -> None:
    await ensure_topics(settings)
    partitions = partitions_of(next(t for t in REGISTRY if t.name == CONVERSATIONS), settings)
    assert partitions > 1, "one partition cannot be idle while another moves"

    def live(name: str) -> LiveService:
        s = settings.model_copy(update={"db_schema": f"{settings.db_schema}_{name}"})
        return LiveService(f"qastream_{name}", lambda args, env: spawn(args, env, s=s))

    ingest, sampler = live("ingest"), live("sampler")
    await asyncio.gather(ingest.start(within=180), sampler.start(within=180))
    runtime = ServiceRuntime(
        INGEST, settings.model_copy(update={"db_schema": f"{settings.db_schema}_ingest"})
    )
    try:
        async with runtime.unit_of_work() as uow:
            await ingest_service.create_tenant(uow, TENANT, "Heartbeats")
            _, key = await ingest_service.create_key(uow, TENANT, Role.admin)
    finally:
        await runtime.engine.dispose()
    admin = {"Authorization": f"Bearer {key}"}
    await asyncio.gather(
        ingest.wait_key("/v1/tenant", admin, within=120), sampler.wait_key("/v1/samples", admin, within=120)
    )

    # Every conversation goes to partition 0: five on the first day, then one on the next day whose time
    # takes partition 0 past the first day's end and the grace. The other partitions get nothing.
    ids = on_partition(6, 0, partitions)
    first_day = [conv(cid, DAY + timedelta(hours=9 + i), "a01") for i, cid in enumerate(ids[:5])]
    next_day = conv(ids[5], DAY + timedelta(days=1, hours=12), "a01")
    async with httpx.AsyncClient(timeout=60, headers=admin) as http:
        r = await http.post(f"{sampler.url}/v1/plans", json=PLAN)
        assert r.status_code in (200, 201), r.text
        body = {"conversations": [c.model_dump(mode="json") for c in [*first_day, next_day]]}
        r = await http.post(f"{ingest.url}/v1/conversations", json=body)
        assert r.status_code in (200, 202) and r.json()["accepted"] == 6, r.text

        async def quota_picks() -> list[dict[str, Any]] | None:
            r = await http.get(f"{sampler.url}/v1/samples", params={"limit": 1000})
            assert r.status_code == 200, r.text
            picks = [s for s in r.json() if s["plan_id"] == "daily"]
            # The quota's two picks are published one by one: wait for both (a third would fail below).
            return picks if len(picks) >= QUOTA else None

        picks = await eventually(quota_picks, within=120, every=0.5)
    assert len(picks) == QUOTA and {p["conversation_id"] for p in picks} <= set(ids[:5])
    assert all(p["stratum"] == "team=team-1|2025-03-03" for p in picks), picks

    # The period closed because every other partition carried a heartbeat, not a conversation.
    records = await read_topic(settings, physical(CONVERSATIONS, settings), expect=6 + partitions)
    beats = [decode(r.key, r.value, r.headers).data for r in records]
    by_partition = {
        r.partition for r, b in zip(records, beats, strict=True) if isinstance(b, PartitionHeartbeat)
    }
    assert by_partition == set(range(partitions))
    conversation_partitions = {
        r.partition for r, b in zip(records, beats, strict=True) if not isinstance(b, PartitionHeartbeat)
    }
    assert conversation_partitions == {0}
