"""The whole pipeline: ingest → sampler → scoring → coaching → reporting, five processes on one broker and database.

    uv run python -m bench.pipeline [--window 60] [--probe 20] [--start 400]
    uv run python -m bench.pipeline --latency-at 350 [--window 60] [--idle 0] [--prefill 60000]
    uv run python -m bench.pipeline --tiny          # CI smoke: a few seconds per phase
    uv run qa bench [--tiny]                        # the same, on the stack of QA_STACK_DIR / --state-dir

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when both are set, else starts (or reuses) the launcher's local
stack. Each service runs as `python -m qastream_<name>` with its own schema (`<run>_<name>`) and the default
consumer settings, under a fresh topic prefix; all dropped at the end. Untimed set-up: a tenant with keys
(ingest's own use case), the five processes ready, and a warm-up batch seen in reporting.

All load is open-loop: a fixed rate of real STAR conversations (fresh ids) posted every 100 ms whatever the
answers. When a rate is *held* is `bench.pipeline_rate`'s rule (ingest answered every post in time and no
consumer group's lag grew).
Prints JSON:
- sustained: the search for the highest held rate: probes of `--probe` seconds from `--start`/s, ×1.3 up or
  down until bracketed, then bisected to 10%; then the best held rate is offered for `--window` seconds (60:
  the issue's definition) and, when that does not hold, 10% less, twice at most. `per_s` is the rate of that
  held window; `cpu_ms_per_conversation` is each process's CPU over it (and its drain) per conversation
  (`bench`: this process, the load generator; `broker`, `postgres`: theirs, when they run on this machine;
  `machine`: every core's busy time), `machine.busy_cores` the cores busy on average (`stolen_cores`: taken
  by the host for other guests, not counted as busy), `database_per_conversation` its commits and rows
  written, `batches` each consumer's batch count, mean size and time;
- idle_one_at_a_time: `--idle` conversations posted one at a time on the drained pipeline;
- latency_at_70_percent: `--window` seconds at 70% of sustained.per_s; with `--latency-at R` the search is
  skipped and `latency_at_given_rate` is `--window` seconds at R/s instead, with each service's CPU per
  conversation and batches over it (as `sustained` reports them), to see where a p99 comes from at one rate;
  `--prefill N` first posts N conversations at `PREFILL_PER_S` and drains them (untimed), so the sampler
  holds the state a search would have left it (its snapshots cost in proportion to that state);
  both timed from the HTTP 202 to the conversation's auto review committed by scoring (`scored`) and by
  reporting (`reported`), heard by `bench.commit_observer` (a notification at commit, in a process of its
  own: no polling). `hops` splits the path at ingest's commit, the sampler's auto sample and scoring's
  review; `timeline` gives each hop's p99 per `TIMELINE_S` of acceptance (periodic work shows as a spike);
  `observer` is that process's own CPU; `sampler_snapshots_at_s` when each sampler snapshot began, in
  seconds from the start of the phase; `gc` each service's garbage collections (`bench.pipeline_rate.usage`);
- raw_produce / raw_consume: aiokafka with the relay's producer settings and the consumer's fetch sizes,
  ~1 KB records, on the same broker in the same run; raw_ping_pong: one record produced and consumed
  before the next, without linger as the relay sends, the floor of one hop;
- ratios: sustained over raw consume, the cores the target rate would keep busy at the held window's cost
  per conversation, and each latency p99 over the ping-pong p99 (hops: ingest→sampler, sampler→scoring,
  scoring→reporting).
Targets (a quiet 2-core machine): sustained >= 1,000/s, p99 scored <= 100 ms, p99 reported <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Collection
from typing import Any

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.commit_observer import Observer, Probe, install, uninstall
from bench.common import emit
from bench.pipeline_rate import held_window, offer, phase, stored_all, sustained, usage
from bench.pipeline_stack import Pipeline, drained, percentiles, ping_pong, post, warm_pipeline
from bench.platform import PARTITIONS, raw_consume, raw_produce
from qastream_shared.settings import Settings
from tests.integration.conftest_ingest import star_stream, take

TARGETS = {"sustained_per_s": 1000.0, "scored_p99_ms": 100.0, "reported_p99_ms": 250.0}
RAW_N = 20_000
PING_PONGS = 200
TIMELINE_S = 5.0
PREFILL_PER_S = 450.0
HOPS = {
    "accepted_to_ingested": ("accepted", "ingested"),
    "ingested_to_sampled": ("ingested", "sampled"),
    "sampled_to_scored": ("sampled", "scored"),
    "scored_to_reported": ("scored", "reported"),
}


def probes_of(p: Pipeline) -> list[Probe]:
    """The commits the latency is timed to: ingest's conversation, the sampler's auto sample, scoring's auto
    review, and reporting's projection of it."""
    return [
        Probe("ingested", p.schema("ingest"), "conversations"),
        Probe("sampled", p.schema("sampler"), "sample_log", "NEW.purpose = 'auto'"),
        Probe("scored", p.schema("scoring"), "reviews", "NEW.kind = 'auto'"),
        Probe("reported", p.schema("reporting"), "reviews", "NEW.kind = 'auto'"),
    ]


@contextlib.asynccontextmanager
async def observed(
    p: Pipeline, conn: asyncpg.Connection, stages: Collection[str] | None = None
) -> AsyncIterator[Observer]:
    """The commit observer with a trigger per probe (of `stages` only, if given: each costs a trigger per row)."""
    probes = [pr for pr in probes_of(p) if stages is None or pr.stage in stages]
    observer = Observer(p.base.asyncpg_dsn, f"bench_{p.base.db_schema}")
    await observer.start()
    try:
        await install(conn, observer.channel, probes)
        yield observer
    finally:
        await uninstall(conn, probes)
        observer.stop()


def since(observer: Observer, stage: str, times: dict[str, float]) -> list[float]:
    """Milliseconds from each conversation's time in `times` to its row heard at `stage`."""
    seen = observer.seen.get(stage, {})
    return [(seen[cid] - t) * 1000 for cid, t in times.items() if cid in seen]


async def idle(p: Pipeline, observer: Observer, n: int) -> dict[str, Any]:
    """One conversation at a time on the drained pipeline: what each hop costs with nothing to batch."""
    accepted: dict[str, float] = {}
    async with p.client() as client:
        for conv in take(star_stream("idle"), n):
            await post(client, [conv])
            accepted[conv["conversation_id"]] = time.perf_counter()
            if missing := await observer.until_seen(("scored", "reported"), [conv["conversation_id"]], 60):
                raise RuntimeError(f"{sorted(missing)} not scored and reported within 60 s")
    return {
        "scored": percentiles(since(observer, "scored", accepted)),
        "reported": percentiles(since(observer, "reported", accepted)),
    }


async def latency(p: Pipeline, observer: Observer, rate: float, window: float) -> dict[str, Any]:
    accepted: dict[str, float] = {}

    def record(ids: list[str], at: float) -> None:
        accepted.update(dict.fromkeys(ids, at))

    cpu_before, observer_before = p.cpu_seconds()["bench"], observer.cpu_seconds()
    phase(f"latency: {rate:.0f}/s for {window:.0f} s")
    started = time.perf_counter()
    offered = await offer(p, "lat", rate, window, record)
    missing = await observer.until_seen(("scored", "reported"), accepted, 120)
    bench_cpu, observer_cpu = p.cpu_seconds()["bench"] - cpu_before, observer.cpu_seconds() - observer_before
    seen = {**observer.seen, "accepted": accepted}

    def hop(start: str, end: str, ids: Collection[str] = accepted.keys()) -> list[float]:
        first, then = seen.get(start, {}), seen.get(end, {})
        return [(then[cid] - first[cid]) * 1000 for cid in ids if cid in first and cid in then]

    buckets: dict[int, list[str]] = {}
    for cid, at in accepted.items():
        buckets.setdefault(int((at - started) // TIMELINE_S), []).append(cid)
    n = max(len(accepted), 1)
    return {
        **offered.judged(),
        "scored": percentiles(since(observer, "scored", accepted)),
        "reported": percentiles(since(observer, "reported", accepted)),
        # Where the time goes: 202 → ingest's commit heard (the 202 leaves just after the commit, so ~0),
        # its relay + the sampler's fetch and batch, scoring's, then reporting's.
        "hops": {name: percentiles(hop(*ends)) for name, ends in HOPS.items()},
        # Per TIMELINE_S of acceptance: [start s, conversations, each hop's p99 ms in HOPS' order, scored p99].
        "timeline": [
            [
                b * TIMELINE_S,
                len(ids),
                *(percentiles(hop(*ends, ids)).get("p99_ms") for ends in HOPS.values()),
                percentiles(hop("accepted", "scored", ids)).get("p99_ms"),
            ]
            for b, ids in sorted(buckets.items())
        ],
        "never_seen": len(missing),
        "cpu_ms_per_conversation": {
            "observer": round(1000 * observer_cpu / n, 4),
            "bench": round(1000 * bench_cpu / n, 4),
        },
    }


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


async def at_rate(p: Pipeline, conn: asyncpg.Connection, rate: float, window: float) -> dict[str, Any]:
    """The latency phase alone at a given rate, with the services' CPU and batches over it and its drain."""
    before = await p.counters()
    began = time.time()
    snapshots = asyncio.create_task(snapshots_taken(p))
    try:
        async with observed(p, conn) as observer:
            lat = await latency(p, observer, rate, window)
    finally:
        snapshots.cancel()
    lat["sampler_snapshots_at_s"] = sorted(round(t - began, 1) for t in await snapshots if t > began)
    await drained(p, 600)
    await stored_all(p, conn, "lat-", lat["conversations"])
    services = await usage(p, before, lat["conversations"])
    return {
        **lat,
        **services,
        "cpu_ms_per_conversation": {**lat["cpu_ms_per_conversation"], **services["cpu_ms_per_conversation"]},
    }


async def snapshots_taken(p: Pipeline) -> set[float]:
    """Until cancelled: when each sampler snapshot began (its transaction's start, epoch s), polled every
    0.5 s, so the timeline's spikes can be laid beside them."""
    taken: set[float] = set()
    conn = await asyncpg.connect(p.base.asyncpg_dsn)
    try:
        while True:
            at = await conn.fetchval(
                f'SELECT extract(epoch FROM taken_at)::float8 FROM "{p.schema("sampler")}".snapshot_mark'
            )
            if at is not None:
                taken.add(at)
            await asyncio.sleep(0.5)
    except asyncio.CancelledError:
        return taken
    finally:
        await conn.close()


async def fixed(window: float, rate: float, idle_n: int, prefill: int) -> dict[str, Any]:
    """`--latency-at`: no search, the latency phase at `rate`, with the same baselines."""
    async with warm_pipeline() as (p, conn):
        idle_figures = await idle_phase(p, conn, idle_n)
        prefilled = None
        if prefill:
            prefilled = await held_window(p, "pre", PREFILL_PER_S, prefill / PREFILL_PER_S)
        lat = await at_rate(p, conn, rate, window)
        snapshot = await conn.fetchrow(
            f'SELECT compacted, extract(epoch FROM now() - taken_at)::float8 AS age_s FROM "{p.schema("sampler")}".snapshot_mark'
        )
        phase("baselines")
        base_figures = await baselines(p.base)
        phase("done")
    pong_p99 = base_figures["raw_ping_pong"]["p99_ms"]
    return {
        "window_s": window,
        # The sampler's latest snapshot: inputs compacted by all its snapshots so far, and its age at the end.
        "sampler_snapshot": dict(snapshot) if snapshot else None,
        "idle_one_at_a_time": idle_figures,
        "prefill": prefilled,
        "latency_at_given_rate": lat,
        **base_figures,
        "ratios": {
            "scored_p99_over_ping_pong_p99": round(lat["scored"].get("p99_ms", 0) / pong_p99, 1),
            "reported_p99_over_ping_pong_p99": round(lat["reported"].get("p99_ms", 0) / pong_p99, 1),
        },
        "targets": {k: v for k, v in TARGETS.items() if k != "sustained_per_s"},
    }


async def idle_phase(p: Pipeline, conn: asyncpg.Connection, idle_n: int) -> dict[str, Any] | None:
    if not idle_n:
        return None
    async with observed(p, conn) as observer:
        phase("idle")
        return await idle(p, observer, idle_n)


async def main(
    window: float, probe_s: float, start: float, max_probes: int, tries: int, idle_n: int
) -> dict[str, Any]:
    async with warm_pipeline() as (p, conn):
        idle_figures = await idle_phase(p, conn, idle_n)
        sus = await sustained(p, conn, start, probe_s, window, max_probes, tries)
        rate = 0.7 * (sus["per_s"] or sus["windows"][-1]["asked_per_s"])
        async with observed(p, conn) as observer:
            lat = await latency(p, observer, rate, window)
        phase("baselines")
        base_figures = await baselines(p.base)
        phase("done")
    pong_p99 = base_figures["raw_ping_pong"]["p99_ms"]
    ratios = {
        "sustained_over_raw_consume": round((sus["per_s"] or 0) / base_figures["raw_consume"]["per_s"], 4),
        # The cores the target rate would keep busy at the held window's cost per conversation (everything
        # on the machine: services, load, broker, database); this machine has `sustained.machine.cores`.
        "cores_for_target_rate": round(
            sus["cpu_ms_per_conversation"]["machine"] * TARGETS["sustained_per_s"] / 1000, 2
        ),
        "scored_p99_over_ping_pong_p99": round(lat["scored"].get("p99_ms", 0) / pong_p99, 1),
        "reported_p99_over_ping_pong_p99": round(lat["reported"].get("p99_ms", 0) / pong_p99, 1),
    }
    met = {
        "sustained_per_s": (sus["per_s"] or 0) >= TARGETS["sustained_per_s"],
        "scored_p99_ms": lat["scored"].get("p99_ms", math.inf) <= TARGETS["scored_p99_ms"],
        "reported_p99_ms": lat["reported"].get("p99_ms", math.inf) <= TARGETS["reported_p99_ms"],
    }
    return {
        "window_s": window,
        "probe_s": probe_s,
        "sustained": sus,
        "idle_one_at_a_time": idle_figures,
        "latency_at_70_percent": lat,
        **base_figures,
        "ratios": ratios,
        "targets": TARGETS,
        "met": met,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--window", type=float, default=60.0, help="seconds a rate is held, and of latency")
    parser.add_argument("--probe", type=float, default=20.0, help="seconds of each search probe")
    parser.add_argument("--start", type=float, default=400.0, help="the search's first rate, per second")
    parser.add_argument("--probes", type=int, default=6, help="most search probes")
    parser.add_argument("--tries", type=int, default=3, help="windows offered, 10%% less each time")
    parser.add_argument("--idle", type=int, default=60, help="conversations posted one at a time, idle")
    parser.add_argument(
        "--latency-at", type=float, default=None, metavar="RATE", help="no search: latency at RATE/s only"
    )
    parser.add_argument(
        "--prefill", type=int, default=0, help="with --latency-at: conversations posted first"
    )
    parser.add_argument("--tiny", action="store_true", help="CI smoke: phases of a few seconds")
    a = parser.parse_args()
    if a.tiny:
        a.window, a.probe, a.start, a.probes, a.tries, a.idle = 4.0, 3.0, 20.0, 1, 1, 5
    if a.latency_at is not None:
        emit(asyncio.run(fixed(a.window, a.latency_at, a.idle, a.prefill)))
    else:
        emit(asyncio.run(main(a.window, a.probe, a.start, a.probes, a.tries, a.idle)))


if __name__ == "__main__":
    cli()
