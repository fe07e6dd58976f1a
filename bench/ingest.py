"""Ingest over real HTTP: sustained conversations/s in batches, single-POST latency, next to raw COPY and produce.

    uv run python -m bench.ingest [--seconds 20] [--clients 6] [--single-rate 200 ...]

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when both are set, else starts (or reuses) the launcher's
local stack. The service runs as `python -m qastream_ingest` in its own process, in a fresh topic prefix and
schema dropped at the end. Prints JSON:
- http_batches: `--clients` concurrent connections posting batches of 100 real STAR conversations (each under
  a fresh id, so every one is new) for `--seconds`; accepted conversations per second (target >= 2,000);
- http_single: one conversation per POST, paced open-loop at half the batch rate for `--seconds` / 2;
  latency is measured from each request's scheduled start, so a stall is not hidden by waiting for it;
- raw_copy: asyncpg copy_records_to_table of rows shaped like ingest's (redacted JSON body, counts);
- raw_produce: aiokafka with the relay's producer settings, values of the STAR conversations' size (1–3 KB).
To see where the service spends its time, `--profile /tmp/ingest.svg` runs py-spy on it during the batches.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import Any

import asyncpg
import httpx
import orjson

from bench.common import TINY_HELP, Stopwatch, create_topic, emit, percentiles, rate
from bench.platform import cleanup, servers
from qastream_ingest.app import SPEC
from qastream_shared.events import Role
from qastream_shared.outbox import make_producer
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import isolated_settings, star_records
from tests.integration.conftest import Proc
from tests.integration.conftest_ingest import LiveIngest, create_tenants, star_stream, take

BATCH = 100
TARGET_PER_S = 2000
RAW_N = 20_000
SINGLE_TIMEOUT_S = 10
SINGLE_CONNECTIONS = 16


async def http_batches(ingest: LiveIngest, key: str, clients: int, seconds: float) -> dict[str, Any]:
    stream = star_stream()
    accepted = 0
    errors = 0

    async def client(c: httpx.AsyncClient, deadline: float) -> None:
        nonlocal accepted, errors
        while time.perf_counter() < deadline:
            r = await c.post(
                "/v1/conversations", content=orjson.dumps({"conversations": take(stream, BATCH)})
            )
            if r.status_code == 202:
                accepted += r.json()["accepted"]
            else:
                errors += 1

    async with httpx.AsyncClient(
        base_url=ingest.url,
        timeout=60,
        headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
    ) as c:
        await client(c, time.perf_counter() + 1)  # warm-up: connections, caches, prepared statements
        accepted = 0
        clock = Stopwatch()
        await asyncio.gather(*(client(c, clock.started + seconds) for _ in range(clients)))
        clock.stop()
    return rate(
        accepted,
        clock.seconds,
        batch=BATCH,
        clients=clients,
        errors=errors,
        target=TARGET_PER_S,
        met=accepted / clock.seconds >= TARGET_PER_S,
    )


async def http_single(ingest: LiveIngest, key: str, per_s: float, seconds: float) -> dict[str, Any]:
    n = int(per_s * seconds)
    bodies = [orjson.dumps(item) for item in take(star_stream(), n)]
    latencies: list[float] = []
    statuses: list[int] = []
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    start = time.perf_counter() + 0.5
    for i, body in enumerate(bodies):
        queue.put_nowait((start + i / per_s, body))

    async def worker(c: httpx.AsyncClient) -> None:
        # A fixed pool of connections keeps the client cheap; pacing stays open-loop because latency is
        # counted from each request's scheduled time, so a slow service shows up as queueing delay.
        while not queue.empty():
            scheduled, body = queue.get_nowait()
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            try:
                statuses.append((await c.post("/v1/conversations", content=body)).status_code)
            except httpx.TimeoutException:
                statuses.append(0)
            latencies.append(time.perf_counter() - scheduled)

    async with httpx.AsyncClient(
        base_url=ingest.url,
        timeout=SINGLE_TIMEOUT_S,
        headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
    ) as c:
        await asyncio.gather(*(worker(c) for _ in range(SINGLE_CONNECTIONS)))
    return {
        "requests": n,
        "per_s": round(per_s, 1),
        "connections": SINGLE_CONNECTIONS,
        **percentiles([1000 * s for s in latencies], (50, 99)),
        "non_202": sum(1 for s in statuses if s != 202),
        "timeouts": statuses.count(0),
    }


def shaped_rows(n: int) -> list[tuple[Any, ...]]:
    records = list(star_records())
    return [
        (
            "bench",
            f"copy-{i}",
            "chat",
            "agent-1",
            None,
            orjson.dumps(records[i % len(records)]),
            '{"email": 1}',
        )
        for i in range(n)
    ]


async def raw_copy(settings: Settings, n: int) -> dict[str, Any]:
    rows = shaped_rows(n)
    conn = await asyncpg.connect(settings.asyncpg_dsn)
    try:
        await conn.execute(
            "CREATE TEMP TABLE copy_bench (tenant_id varchar(64), conversation_id varchar(200), "
            "channel varchar(16), agent_id varchar(200), team varchar(200), body bytea, redactions jsonb, "
            "ingested_at timestamptz DEFAULT now(), PRIMARY KEY (tenant_id, conversation_id))"
        )
        columns = ["tenant_id", "conversation_id", "channel", "agent_id", "team", "body", "redactions"]
        clock = Stopwatch()
        for start in range(0, n, BATCH):
            await conn.copy_records_to_table(
                "copy_bench", records=rows[start : start + BATCH], columns=columns
            )
        clock.stop()
    finally:
        await conn.close()
    return rate(n, clock.seconds, batch=BATCH)


async def raw_produce(settings: Settings, n: int) -> dict[str, Any]:
    values = [orjson.dumps(r) for r in star_records()]
    topic = f"{settings.topic_prefix}bench.raw"
    await create_topic(settings.kafka_bootstrap_servers, topic)
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"warm-up")
        clock = Stopwatch()
        futures = [
            await producer.send(topic, v, key=b"c%d" % i) for i, v in zip(range(n), itertools.cycle(values))
        ]
        await asyncio.gather(*futures)
        clock.stop()
    finally:
        await producer.stop()
    sizes = sorted(len(v) for v in values)
    return rate(
        n, clock.seconds, value_bytes_p50=sizes[len(sizes) // 2], value_bytes_p90=sizes[len(sizes) * 9 // 10]
    )


async def main(
    seconds: float, clients: int, profile: str | None, single_rates: list[float], raw_n: int = RAW_N
) -> dict[str, Any]:
    db, kafka = servers()
    settings = isolated_settings(db, kafka)
    key = (await create_tenants(settings, "bench"))["bench"].keys[Role.platform]
    ingest = LiveIngest(lambda args, env: Proc(args, settings, env))
    spy = None
    try:
        await ingest.start()
        if profile:
            spy = await asyncio.create_subprocess_exec(
                *["py-spy", "record", "-d", str(int(seconds) + 2), "-p", str(ingest.pid), "-o", profile],
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        batches = await http_batches(ingest, key, clients, seconds)
        if spy is not None:
            await spy.wait()
        single = await http_single(ingest, key, batches["per_s"] / 2, seconds / 2)
        # Latency where one process keeps up, beside the half-load figure (which shows saturation).
        at_rates = {f"{r:g}_per_s": await http_single(ingest, key, r, seconds / 2) for r in single_rates}
        ingest.stop()
        return {
            "http_batches": batches,
            "http_single": single,
            "http_single_at": at_rates,
            "raw_copy": await raw_copy(settings, raw_n),
            "raw_produce": await raw_produce(settings, raw_n),
        }
    finally:
        ingest.stop()
        await cleanup(ServiceRuntime(SPEC, settings), settings)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--raw", type=int, default=RAW_N, help="records in each raw baseline")
    parser.add_argument("--profile", help="write a py-spy flame graph of the service here")
    parser.add_argument(
        "--single-rate",
        type=float,
        action="append",
        default=[],
        help="also measure single POSTs at this rate",
    )
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    if args.tiny:
        args.seconds, args.clients, args.raw = 1.0, 1, 200
    emit(asyncio.run(main(args.seconds, args.clients, args.profile, args.single_rate, args.raw)))
