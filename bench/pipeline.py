"""The whole pipeline: ingest → sampler → scoring → coaching → reporting, five processes on one broker and database.

    uv run python -m bench.pipeline [--window 60] [--clients 4]
    uv run python -m bench.pipeline --tiny          # CI smoke: a few seconds per phase
    uv run qa bench [--tiny]                        # the same, on the stack of QA_STACK_DIR / --state-dir

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when both are set, else starts (or reuses) the launcher's local
stack. Each service runs as `python -m qastream_<name>` with its own schema (`<run>_<name>`) and the default
consumer settings, under a fresh topic prefix; all dropped at the end. Untimed set-up: a tenant with keys
(ingest's own use case), the five processes ready, and a warm-up batch seen in reporting.
Prints JSON:
- idle_one_at_a_time: `--idle` conversations posted one at a time on the drained pipeline, each timed from
  its 202 to its auto review stored by scoring and by reporting: the cost of the hops with nothing to batch;
- sustained: `--clients` connections post batches of 100 real STAR conversations (fresh ids) as fast as
  ingest accepts them for `--window` seconds; per_s is the conversations accepted divided by the time from
  the first POST until every service's consumer group has no lag left (all five stages done with them).
  lag_samples is the summed group lag each second; lag_growing says whether it still rose over the second
  half of the window (then the stages did not hold the ingest rate, and per_s is the drain-limited rate);
  cpu_ms_per_conversation is each process's CPU time over the phase per conversation accepted (`bench`:
  this process, the load generator), and batches each consumer's batch count, mean size and mean time;
- latency: open-loop at 70% of sustained.per_s for `--window` seconds, in batches every 100 ms, timed from
  each batch's HTTP 202 to the conversation's auto review being stored by scoring (`scored`) and to it being
  stored by reporting (`reported`), observed by polling both schemas every few ms (the polling interval is
  part of the figure); lag_at_end is the groups' lag when the posting stopped;
- raw_produce / raw_consume: aiokafka with the relay's producer settings and the consumer's fetch sizes,
  ~1 KB records, on the same broker in the same run; raw_ping_pong: one record produced and consumed
  before the next, without linger as the relay sends, the floor of one hop;
- ratios: sustained over raw consume, and each latency p99 over the ping-pong p99 (hops: ingest→sampler,
  sampler→scoring, scoring→reporting).
Targets (a quiet 2-core machine): sustained >= 1,000/s, p99 scored <= 100 ms, p99 reported <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import emit
from bench.platform import PARTITIONS, raw_consume, raw_produce, servers
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
BATCH = 100
TARGETS = {"sustained_per_s": 1000.0, "scored_p99_ms": 100.0, "reported_p99_ms": 250.0}
RAW_N = 20_000
PING_PONGS = 200
POLL_S = 0.003
# Requests of a few conversations cost ingest several times more per conversation than larger ones: at
# 0.02 s (6 per request at ~290/s) ingest fell behind the offered rate on this machine.
LATENCY_TICK_S = 0.1


def phase(name: str) -> None:
    """Progress on stderr (stdout is the JSON), e.g. for attaching a profiler to the right phase."""
    print(f"bench.pipeline: {name} at {time.strftime('%H:%M:%S')}", file=sys.stderr, flush=True)


def percentiles(samples_ms: list[float]) -> dict[str, Any]:
    if len(samples_ms) < 2:
        return {"n": len(samples_ms)}
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {
        "n": len(samples_ms),
        "p50_ms": round(statistics.median(samples_ms), 1),
        "p90_ms": round(cuts[89], 1),
        "p99_ms": round(cuts[98], 1),
        "max_ms": round(max(samples_ms), 1),
    }


class Pipeline:
    def __init__(self, base: Settings) -> None:
        self.base = base
        self.settings = {
            name: base.model_copy(update={"db_schema": f"{base.db_schema}_{name}"}) for name in SERVICES
        }
        self.live: dict[str, LiveService] = {}
        self.groups = [consumer_group(s, name) for name, s in self.settings.items()]
        self.admin = AIOKafkaAdminClient(bootstrap_servers=base.kafka_bootstrap_servers)
        self.ends = AIOKafkaConsumer(bootstrap_servers=base.kafka_bootstrap_servers)
        self.key = ""

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

    async def lag(self) -> int:
        """Summed lag of the five consumer groups: records on their topics not yet committed."""
        total = 0
        for group in self.groups:
            committed = await self.admin.list_consumer_group_offsets(group)
            tps = list(committed)
            if not tps:
                continue
            ends = await self.ends.end_offsets(tps)
            total += sum(max(0, ends[tp] - committed[tp].offset) for tp in tps if committed[tp].offset >= 0)
        return total

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.live["ingest"].url,
            timeout=60,
            headers={"Authorization": f"Bearer {self.key}", "content-type": "application/json"},
        )

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU each service process has used so far, and this bench process (the load)."""
        used = {}
        for name, svc in self.live.items():
            assert svc.proc is not None
            t = psutil.Process(svc.proc.popen.pid).cpu_times()
            used[name] = t.user + t.system
        t = psutil.Process().cpu_times()
        used["bench"] = t.user + t.system
        return used

    async def batch_totals(self) -> dict[str, tuple[float, float, float]]:
        """Per service from its /metrics: (batches, records, seconds) its consumer has committed so far."""
        totals = {}
        async with httpx.AsyncClient(timeout=10) as client:
            for name, svc in self.live.items():
                text = (await client.get(f"{svc.url}/metrics")).text
                found = dict.fromkeys(("batch_size_count", "batch_size_sum", "batch_seconds_sum"), 0.0)
                for line in text.splitlines():
                    metric, _, value = line.partition(f'{{service="{name}"}} ')
                    if value and metric.removeprefix("qa_consumer_") in found:
                        found[metric.removeprefix("qa_consumer_")] = float(value)
                totals[name] = (
                    found["batch_size_count"],
                    found["batch_size_sum"],
                    found["batch_seconds_sum"],
                )
        return totals

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


async def sustained(p: Pipeline, conn: asyncpg.Connection, clients: int, window: float) -> dict[str, Any]:
    stream = star_stream("sus")
    accepted = 0
    lags: list[int] = []
    started = time.perf_counter()
    deadline = started + window

    async def poster() -> None:
        nonlocal accepted
        async with p.client() as client:
            while time.perf_counter() < deadline:
                # Not `accepted += await post(...)`: that reads the total before the await, so the posters'
                # additions overwrote each other and the figure counted about one client's conversations.
                n = await post(client, take(stream, BATCH))
                accepted += n

    async def sampler() -> None:
        while time.perf_counter() < deadline:
            lags.append(await p.lag())
            await asyncio.sleep(1.0)

    cpu_before, batches_before = p.cpu_seconds(), await p.batch_totals()
    await asyncio.gather(sampler(), *(poster() for _ in range(clients)))
    posted_s = time.perf_counter() - started
    done = await drained(p, 600)
    cpu = {name: used - cpu_before[name] for name, used in p.cpu_seconds().items()}
    batches = {
        name: [after - before for after, before in zip(totals, batches_before[name], strict=True)]
        for name, totals in (await p.batch_totals()).items()
    }
    half = lags[len(lags) // 2 :]
    stored = await conn.fetchval(
        f"SELECT count(*) FROM \"{p.schema('ingest')}\".conversations WHERE conversation_id LIKE 'sus-%'"
    )
    if stored != accepted:
        raise RuntimeError(f"ingest answered {accepted} accepted but stored {stored} conversations")
    return {
        "conversations": accepted,
        "ingest_per_s": round(accepted / posted_s, 1),
        "per_s": round(accepted / (done - started), 1),
        "drain_s": round(done - started - posted_s, 2),
        # What each process spent per conversation (the bench's own share is the load generator and the lag
        # polling): on two shared cores their sum bounds the rate more than any one hop's wait.
        "cpu_ms_per_conversation": {
            **{name: round(1000 * s / max(accepted, 1), 3) for name, s in cpu.items()},
            "services_total": round(
                1000 * sum(s for n, s in cpu.items() if n != "bench") / max(accepted, 1), 3
            ),
        },
        # Each consumer's batches over the phase: how far batching spread its per-batch costs.
        "batches": {
            name: {"n": int(n), "mean_records": round(records / n, 1), "mean_ms": round(1000 * secs / n, 1)}
            for name, (n, records, secs) in batches.items()
            if n
        },
        "lag_samples": lags,
        "lag_growing": len(half) >= 2 and half[-1] > half[0] + BATCH * clients,
    }


async def latency(p: Pipeline, conn: asyncpg.Connection, rate: float, window: float) -> dict[str, Any]:
    stream = star_stream("lat")
    per_tick = max(1, round(rate * LATENCY_TICK_S))
    tick_s = per_tick / rate  # at low rates one conversation per tick, spaced to keep the rate
    accepted_at: dict[str, float] = {}
    pending: dict[str, set[str]] = {"scoring": set(), "reporting": set()}
    seen: dict[str, list[float]] = {"scoring": [], "reporting": []}
    # Both schemas in one statement: the poll runs every few ms beside the pipeline, on the same two cores.
    query = " UNION ALL ".join(
        f"SELECT '{name}' AS stage, conversation_id FROM \"{p.schema(name)}\".reviews"
        f" WHERE kind = 'auto' AND conversation_id = ANY(${n})"
        for n, name in enumerate(pending, 1)
    )
    posting = True

    async def observe() -> None:
        while posting or any(pending.values()):
            if any(pending.values()):
                rows = await conn.fetch(query, *(list(ids) for ids in pending.values()))
                now = time.perf_counter()
                for r in rows:
                    ids, cid = pending[r["stage"]], r["conversation_id"]
                    if cid in ids:
                        ids.discard(cid)
                        seen[r["stage"]].append((now - accepted_at[cid]) * 1000)
            await asyncio.sleep(POLL_S)

    async def one(client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> None:
        await post(client, batch)
        now = time.perf_counter()
        for c in batch:
            accepted_at[c["conversation_id"]] = now
            for ids in pending.values():
                ids.add(c["conversation_id"])

    observer = asyncio.create_task(observe())
    sent: list[asyncio.Task[None]] = []
    async with p.client() as client:
        start = time.perf_counter()
        tick = 0
        while (scheduled := start + tick * tick_s) < start + window:
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            sent.append(asyncio.create_task(one(client, take(stream, per_tick))))
            tick += 1
        await asyncio.gather(*sent)
        offered_s = time.perf_counter() - start
    lag_at_end = await p.lag()
    posting = False
    try:
        await asyncio.wait_for(observer, 300)
    except TimeoutError:
        observer.cancel()
    return {
        "offered_per_s": round(per_tick * tick / offered_s, 1),
        "conversations": per_tick * tick,
        "lag_at_end": lag_at_end,
        "scored": percentiles(seen["scoring"]),
        "reported": percentiles(seen["reporting"]),
        "never_seen": {name: len(ids) for name, ids in pending.items()},
    }


async def idle(p: Pipeline, conn: asyncpg.Connection, n: int) -> dict[str, Any]:
    """One conversation at a time on the drained pipeline: what each hop costs with nothing to batch."""
    stream = star_stream("idle")
    found = {
        name: f"SELECT 1 FROM \"{p.schema(name)}\".reviews WHERE kind = 'auto' AND conversation_id = $1"
        for name in ("scoring", "reporting")
    }
    seen: dict[str, list[float]] = {name: [] for name in found}
    async with p.client() as client:
        for conv in take(stream, n):
            await post(client, [conv])
            accepted = time.perf_counter()
            waiting = dict(found)
            deadline = accepted + 60
            while waiting:
                for name, query in list(waiting.items()):
                    if await conn.fetchval(query, conv["conversation_id"]):
                        seen[name].append((time.perf_counter() - accepted) * 1000)
                        del waiting[name]
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{conv['conversation_id']} not seen in {sorted(waiting)} within 60 s")
                await asyncio.sleep(POLL_S)
    return {"scored": percentiles(seen["scoring"]), "reported": percentiles(seen["reporting"])}


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


async def baselines(settings: Settings) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    raw, pong = f"{settings.topic_prefix}bench.raw", f"{settings.topic_prefix}bench.pingpong"
    try:
        await admin.create_topics([NewTopic(raw, PARTITIONS, 1), NewTopic(pong, 1, 1)])
    finally:
        await admin.close()
    return {
        "raw_produce": await raw_produce(settings, raw, RAW_N),
        "raw_consume": await raw_consume(settings, raw, RAW_N),
        "raw_ping_pong": await ping_pong(settings, pong, PING_PONGS),
    }


async def main(window: float, clients: int, idle_n: int) -> dict[str, Any]:
    async with warm_pipeline() as (p, conn):
        phase("idle")
        idle_figures = await idle(p, conn, idle_n)
        phase("sustained")
        sus = await sustained(p, conn, clients, window)
        phase("latency")
        lat = await latency(p, conn, 0.7 * sus["per_s"], window)
        phase("baselines")
        base_figures = await baselines(p.base)
        phase("done")
    pong_p99 = base_figures["raw_ping_pong"]["p99_ms"]
    ratios = {
        "sustained_over_raw_consume": round(sus["per_s"] / base_figures["raw_consume"]["per_s"], 4),
        "scored_p99_over_ping_pong_p99": round(lat["scored"].get("p99_ms", 0) / pong_p99, 1),
        "reported_p99_over_ping_pong_p99": round(lat["reported"].get("p99_ms", 0) / pong_p99, 1),
    }
    met = {
        "sustained_per_s": sus["per_s"] >= TARGETS["sustained_per_s"],
        "scored_p99_ms": lat["scored"].get("p99_ms", float("inf")) <= TARGETS["scored_p99_ms"],
        "reported_p99_ms": lat["reported"].get("p99_ms", float("inf")) <= TARGETS["reported_p99_ms"],
    }
    return {
        "window_s": window,
        "clients": clients,
        "idle_one_at_a_time": idle_figures,
        "sustained": sus,
        "latency_at_70_percent": lat,
        **base_figures,
        "ratios": ratios,
        "targets": TARGETS,
        "met": met,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--window", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=4, help="concurrent posting connections")
    parser.add_argument("--idle", type=int, default=60, help="conversations posted one at a time, idle")
    parser.add_argument("--tiny", action="store_true", help="CI smoke: 4 s phases")
    a = parser.parse_args()
    emit(asyncio.run(main(4.0 if a.tiny else a.window, a.clients, 10 if a.tiny else a.idle)))


if __name__ == "__main__":
    cli()
