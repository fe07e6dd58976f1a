"""The five services started for a bench (bench.pipeline, bench.soak): their lag, CPU and batch figures.

Each service runs as `python -m qastream_<name>` with its own schema (`<run>_<name>`) and the default consumer
settings, under a fresh topic prefix, all dropped at the end (`warm_pipeline`). Also the ping-pong baseline
both benches print beside their latencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bench.common import percentiles
from bench.platform import servers
from qastream_shared.consumer import consumer_group
from qastream_shared.events import Role
from qastream_shared.outbox import make_producer
from qastream_shared.settings import Settings
from qastream_shared.testing import drop_isolated, isolated_settings
from tests.integration.conftest import Proc
from tests.integration.conftest_ingest import create_tenants, star_stream, take
from tests.integration.live_service import LiveService

SERVICES = ("ingest", "sampler", "scoring", "coaching", "reporting")
TENANT = "bench"


def _samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def _batch_totals(name: str, text: str) -> tuple[float, float, float]:
    found = dict.fromkeys(("batch_size_count", "batch_size_sum", "batch_seconds_sum"), 0.0)
    for sample in _samples(text):
        metric = sample.name.removeprefix("qa_consumer_")
        if metric in found and sample.labels == {"service": name}:
            found[metric] = sample.value
    return found["batch_size_count"], found["batch_size_sum"], found["batch_seconds_sum"]


def _gc_totals(text: str) -> dict[str, dict[str, float]]:
    gens: dict[str, dict[str, float]] = {}
    for sample in _samples(text):
        kind = sample.name.removeprefix("qa_gc_pause_seconds_")
        if kind == sample.name or kind not in ("count", "sum", "bucket"):
            continue
        found = gens.setdefault(f"gen{sample.labels['generation']}", {})
        if kind != "bucket":
            found[kind] = sample.value
        elif sample.labels["le"] != "+Inf":
            found[f"over_{float(sample.labels['le']):g}"] = -sample.value  # cumulative: count - this = longer
    for found in gens.values():
        for key in [k for k in found if k.startswith("over_")]:
            found[key] += found.get("count", 0.0)
    return gens


def listening(address: str) -> psutil.Process | None:
    """The process that listens at `address` (a URL, or host:port), when that is on this machine: the broker or
    the database."""
    parts = urlsplit(address if "://" in address else f"//{address}")
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    port = parts.port
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid:
            return psutil.Process(c.pid)
    return None


def cpu_with_children(server: psutil.Process) -> float:
    """A process's CPU so far: its own, its reaped children's and its live ones' (PostgreSQL's backends, the
    sampler's snapshot writers), so a child that exits between two readings is counted once, on whichever
    side holds it then."""
    t = server.cpu_times()
    used = t.user + t.system + t.children_user + t.children_system
    for child in server.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            c = child.cpu_times()
            used += c.user + c.system
    return used


def machine_seconds() -> tuple[float, float]:
    """CPU seconds all cores have spent on this machine's work since boot, and those the hypervisor gave to
    other guests while this one wanted them (steal: a busy host, the noise between two runs here). Guest time
    is already inside user, as psutil counts it for `cpu_percent`."""
    t = psutil.cpu_times()
    stolen = getattr(t, "steal", 0.0)
    busy = sum(t) - t.idle - getattr(t, "iowait", 0.0) - stolen
    return busy - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0), stolen


async def database_work(dsn: str) -> tuple[int, int]:
    """The database's commits and rows written (inserted, updated, deleted) so far. Each backend reports its
    own at most once a second while busy (within 10 s once idle), so a minute's window is off by ~2%."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS written"
            " FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    assert row is not None
    return row["xact_commit"], row["written"]


@dataclass
class Counters:
    at: float
    cpu: dict[str, float]
    database: tuple[int, int]
    batches: dict[str, tuple[float, float, float]]
    gc: dict[str, dict[str, dict[str, float]]]


class Pipeline:
    def __init__(self, base: Settings) -> None:
        self.base = base
        self.settings = {
            name: base.model_copy(update={"db_schema": f"{base.db_schema}_{name}"}) for name in SERVICES
        }
        self.live: dict[str, LiveService] = {}
        self.groups = {name: consumer_group(s, name) for name, s in self.settings.items()}
        self.admin = AIOKafkaAdminClient(bootstrap_servers=base.kafka_bootstrap_servers)
        self.ends = AIOKafkaConsumer(bootstrap_servers=base.kafka_bootstrap_servers)
        self.key = ""
        # The broker's and the database's own processes, when they run here: their CPU is the rest of what a
        # conversation costs this machine.
        self.infrastructure = {
            name: proc
            for name, proc in (
                ("broker", listening(base.kafka_bootstrap_servers.split(",")[0])),
                ("postgres", listening(base.asyncpg_dsn)),
            )
            if proc is not None
        }

    def schema(self, name: str) -> str:
        schema = self.settings[name].db_schema
        assert schema is not None
        return schema

    async def start(self) -> None:
        tenants = await create_tenants(self.settings["ingest"], TENANT)
        self.key = tenants[TENANT].keys[Role.platform]
        for name, s in self.settings.items():
            svc = LiveService(f"qastream_{name}", lambda args, env, s=s: Proc(args, s, env))  # type: ignore[misc]
            self.live[name] = svc
        await asyncio.gather(*(svc.start(within=600) for svc in self.live.values()))
        await self.admin.start()
        await self.ends.start()

    async def stop(self) -> None:
        for svc in self.live.values():
            svc.stop()
        with contextlib.suppress(Exception):
            await self.ends.stop()
        with contextlib.suppress(Exception):
            await self.admin.close()

    async def lag_by_group(self) -> dict[str, tuple[int, int]]:
        """Per service: (records on its group's partitions not yet committed, their summed end offsets)."""
        committed = {name: await self.admin.list_consumer_group_offsets(g) for name, g in self.groups.items()}
        tps = list({tp for offsets in committed.values() for tp in offsets})
        ends = await self.ends.end_offsets(tps) if tps else {}
        return {
            name: (
                sum(max(0, ends[tp] - o.offset) for tp, o in offsets.items() if o.offset >= 0),
                sum(ends[tp] for tp in offsets),
            )
            for name, offsets in committed.items()
        }

    async def lag(self) -> int:
        """Summed lag of the five consumer groups: records on their topics not yet committed."""
        return sum(lag for lag, _ in (await self.lag_by_group()).values())

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.live["ingest"].url,
            timeout=60,
            headers={"Authorization": f"Bearer {self.key}", "content-type": "application/json"},
        )

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU each service process has used so far (with its children: the sampler's snapshot
        writers), this bench process (the load), the broker and the database where they run here, and the whole
        machine (`machine`, and `stolen` from it by the host)."""
        used = {}
        for name, svc in self.live.items():
            assert svc.proc is not None
            used[name] = cpu_with_children(psutil.Process(svc.proc.popen.pid))
        t = psutil.Process().cpu_times()
        used["bench"] = t.user + t.system
        for name, server in self.infrastructure.items():
            used[name] = cpu_with_children(server)
        used["machine"], used["stolen"] = machine_seconds()
        return used

    async def metrics(self) -> dict[str, str]:
        """Each service's /metrics text."""
        async with httpx.AsyncClient(timeout=10) as client:
            return {name: (await client.get(f"{svc.url}/metrics")).text for name, svc in self.live.items()}

    async def counters(self) -> Counters:
        """What `bench.pipeline_rate.usage` subtracts to give a window's CPU, batches and collections."""
        texts = await self.metrics()
        return Counters(
            time.perf_counter(),
            self.cpu_seconds(),
            await database_work(self.base.asyncpg_dsn),
            {name: _batch_totals(name, text) for name, text in texts.items()},
            {name: _gc_totals(text) for name, text in texts.items()},
        )

    def alive(self) -> None:
        for svc in self.live.values():
            assert svc.proc is not None
            if svc.proc.popen.poll() is not None:
                raise RuntimeError(f"{svc.module} exited:\n{svc.output()}")


async def post(client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> int:
    r = await client.post("/v1/conversations", content=orjson.dumps({"conversations": batch}))
    if r.status_code != 202:
        raise RuntimeError(f"ingest answered {r.status_code}: {r.text[:500]}")
    accepted: int = r.json()["accepted"]
    return accepted


async def drained(p: Pipeline, within: float) -> float:
    """Waits until no group has lag; returns the time it happened (perf_counter)."""
    deadline = time.perf_counter() + within
    while True:
        p.alive()
        if await p.lag() == 0:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"lag not drained within {within}s")
        await asyncio.sleep(0.05)


async def warm_up(p: Pipeline, conn: asyncpg.Connection) -> None:
    stream = star_stream("warm")
    async with p.client() as client:
        batch = take(stream, 20)
        ids = [c["conversation_id"] for c in batch]
        await post(client, batch)
    deadline = time.perf_counter() + 180
    while await conn.fetchval(
        f'SELECT count(*) FROM "{p.schema("reporting")}".reviews WHERE conversation_id = ANY($1)', ids
    ) < len(ids):
        p.alive()
        if time.perf_counter() > deadline:
            raise RuntimeError("warm-up conversations never reached reporting")
        await asyncio.sleep(0.1)
    await drained(p, 120)


@contextlib.asynccontextmanager
async def warm_pipeline() -> AsyncIterator[tuple[Pipeline, asyncpg.Connection]]:
    """The five services in isolated schemas and topics, warmed up, and a connection to read their tables;
    everything is stopped and dropped afterwards (bench.pipeline and bench.soak)."""
    db, kafka = servers()
    base = isolated_settings(
        db, kafka, consumer_batch_timeout_ms=Settings.model_fields["consumer_batch_timeout_ms"].default
    )
    p = Pipeline(base)
    conn: asyncpg.Connection | None = None
    try:
        await p.start()
        conn = await asyncpg.connect(base.asyncpg_dsn)
        await warm_up(p, conn)
        yield p, conn
    finally:
        if conn is not None:
            await conn.close()
        await p.stop()
        await drop_isolated([base])


async def ping_pong(settings: Settings, topic: str, n: int) -> dict[str, Any]:
    # The relay closes each record batch it builds, so it never lingers: neither does the baseline.
    producer = make_producer(settings, linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        samples: list[float] = []
        for i in range(n + 10):
            t0 = time.perf_counter()
            await producer.send(topic, b"x" * 1024, key=b"k", partition=0)
            while not (await consumer.getmany(tp, timeout_ms=1000)).get(tp):
                pass
            if i >= 10:  # warm-up: metadata, first fetch sessions
                samples.append((time.perf_counter() - t0) * 1000)
    finally:
        await consumer.stop()
        await producer.stop()
    return percentiles(samples)
