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
answers. A rate is *held* when ingest answered every post by the end of the window (+5%, at least 1 s) and no
consumer group's lag grew: over the window after its first quarter, each group's lag slope (least squares
over a sample every 0.5 s) is at most 5% of the records arriving on its topics, or the rise it fits over
that span is within one consumer batch (the sawtooth of batches tilts a short fit).
Prints JSON:
- sustained: the search for the highest held rate: probes of `--probe` seconds from `--start`/s, ×1.3 up or
  down until bracketed, then bisected to 10%; then the best held rate is offered for `--window` seconds (60:
  the issue's definition) and, when that does not hold, 10% less, twice at most. `per_s` is the rate of that
  held window; `cpu_ms_per_conversation` is each process's CPU over it (and its drain) per conversation
  (`bench`: this process, the load generator), `batches` each consumer's batch count, mean size and time;
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
  `observer` is that process's own CPU;
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
import math
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.commit_observer import Observer, Probe, install, uninstall
from bench.common import emit
from bench.pipeline_stack import SERVICES, Pipeline, drained, percentiles, ping_pong, post, warm_pipeline
from bench.platform import PARTITIONS, raw_consume, raw_produce
from qastream_shared.settings import Settings
from tests.integration.conftest_ingest import star_stream, take

TARGETS = {"sustained_per_s": 1000.0, "scored_p99_ms": 100.0, "reported_p99_ms": 250.0}
RAW_N = 20_000
PING_PONGS = 200
# Requests of a few conversations cost ingest several times more per conversation than larger ones: at
# 0.02 s (6 per request at ~290/s) ingest fell behind the offered rate on this machine.
TICK_S = 0.1
LAG_EVERY_S = 0.5
WARM_SHARE = 0.25  # of a window, before the lag is judged: the pipeline filling up
GROWTH_LIMIT = 0.05  # lag slope over inflow a held rate may show: noise of batches, not a backlog
STEP = 1.3  # the search's factor until a held and a failed rate bracket the answer
RESOLUTION = 0.10  # bisect until the failed rate is within this of the held one
VERIFY_STEP = 0.9
IN_FLIGHT_LIMIT = 50  # unanswered posts (5 s of ticks) at which ingest has plainly not held the rate
TIMELINE_S = 5.0
PREFILL_PER_S = 450.0
HOPS = {
    "accepted_to_ingested": ("accepted", "ingested"),
    "ingested_to_sampled": ("ingested", "sampled"),
    "sampled_to_scored": ("sampled", "scored"),
    "scored_to_reported": ("scored", "reported"),
}


def phase(name: str) -> None:
    """Progress on stderr (stdout is the JSON), e.g. for attaching a profiler to the right phase."""
    print(f"bench.pipeline: {name} at {time.strftime('%H:%M:%S')}", file=sys.stderr, flush=True)


@dataclass
class Offered:
    """What one open-loop window posted, and each group's (lag, end offsets) every LAG_EVERY_S from its start."""

    asked_per_s: float
    seconds: float
    batch_records: int  # a consumer's batch: lag that stays within one is what batching holds back
    conversations: int = 0
    answered_s: float = 0.0  # from the first POST to the last 202
    gave_up: bool = False  # ingest left IN_FLIGHT_LIMIT posts unanswered
    lags: list[tuple[float, dict[str, tuple[int, int]]]] = field(default_factory=list)

    def judged(self) -> dict[str, Any]:
        """The window's figures and whether the rate was held (see the module's docstring)."""
        allowance = max(1.0, 0.05 * self.seconds)
        kept = [(t, by) for t, by in self.lags if t >= WARM_SHARE * self.seconds]
        growth: dict[str, float] = {}
        grew: dict[str, bool] = {}
        if len(kept) >= 3:
            ts = [t for t, _ in kept]
            for name in SERVICES:
                lag_slope = statistics.linear_regression(ts, [by[name][0] for _, by in kept]).slope
                inflow = statistics.linear_regression(ts, [by[name][1] for _, by in kept]).slope
                growth[name] = round(lag_slope / inflow, 3) if inflow > 0 else 0.0
                # The sawtooth of a stage's batches tilts a short fit: growth counts once the fitted rise
                # over the judged span is more than one batch.
                grew[name] = growth[name] > GROWTH_LIMIT and lag_slope * (ts[-1] - ts[0]) > self.batch_records
        ingest_held = not self.gave_up and self.answered_s <= self.seconds + allowance
        lag_held = bool(grew) and not any(grew.values())
        return {
            "asked_per_s": round(self.asked_per_s, 1),
            "offered_per_s": round(self.conversations / max(self.answered_s, self.seconds), 1),
            "seconds": self.seconds,
            "conversations": self.conversations,
            "answered_after_s": round(self.answered_s, 2),
            # Per group: lag slope over inflow after the first quarter; > GROWTH_LIMIT is a growing backlog.
            "lag_growth": growth,
            "lag_at_end": sum(lag for lag, _ in self.lags[-1][1].values()) if self.lags else None,
            "held": ingest_held and lag_held,
        }


async def offer(
    p: Pipeline,
    prefix: str,
    rate: float,
    seconds: float,
    accepted: Callable[[list[str], float], None] | None = None,
) -> Offered:
    """Posts `rate` conversations a second for `seconds`, open-loop, sampling the groups' lag meanwhile;
    `accepted(ids, time)` is told of each 202."""
    stream = star_stream(prefix)
    per_tick = max(1, round(rate * TICK_S))
    tick_s = per_tick / rate  # at low rates one conversation per tick, spaced to keep the rate
    out = Offered(rate, seconds, p.base.consumer_batch_size)
    in_flight: set[asyncio.Task[None]] = set()
    async with p.client() as client:
        start = time.perf_counter()

        async def one(batch: list[dict[str, Any]]) -> None:
            n = await post(client, batch)  # not `+= await`: that reads the total before the await
            out.conversations += n
            now = time.perf_counter()
            out.answered_s = now - start
            if accepted is not None:
                accepted([c["conversation_id"] for c in batch], now)

        async def sample() -> None:
            while True:
                out.lags.append((time.perf_counter() - start, await p.lag_by_group()))
                await asyncio.sleep(LAG_EVERY_S)

        sampler = asyncio.create_task(sample())
        try:
            tick = 0
            while (scheduled := start + tick * tick_s) < start + seconds:
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
                if len(in_flight) >= IN_FLIGHT_LIMIT:
                    out.gave_up = True
                    break
                task = asyncio.create_task(one(take(stream, per_tick)))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                tick += 1
            while in_flight:
                await asyncio.gather(*in_flight)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    return out


async def held_window(p: Pipeline, prefix: str, rate: float, seconds: float) -> dict[str, Any]:
    """One open-loop window at `rate`, judged, then drained so the next starts from an empty pipeline."""
    phase(f"{prefix}: {rate:.0f}/s for {seconds:.0f} s")
    judged = (await offer(p, prefix, rate, seconds)).judged()
    started = time.perf_counter()
    await drained(p, 600)
    judged["drain_s"] = round(time.perf_counter() - started, 2)
    return judged


async def sustained(
    p: Pipeline,
    conn: asyncpg.Connection,
    start: float,
    probe_s: float,
    window: float,
    max_probes: int,
    tries: int = 3,
) -> dict[str, Any]:
    """The highest rate the five stages hold: searched with short probes, then held for `window`."""
    probes: list[dict[str, Any]] = []
    held, failed = 0.0, math.inf
    rate = start
    for n in range(max_probes):
        probe = await held_window(p, f"probe{n}", rate, probe_s)
        probes.append(probe)
        if probe["held"]:
            held = rate
        else:
            failed = rate
        if failed == math.inf:
            rate = held * STEP
        elif held == 0:
            rate = failed / STEP
        elif failed / held <= 1 + RESOLUTION:
            break
        else:
            rate = math.sqrt(held * failed)
    rate = held or rate  # nothing held: the lowest rate the search reached
    windows = []
    for n in range(tries):
        cpu_before, batches_before = p.cpu_seconds(), await p.batch_totals()
        window_figures = await held_window(p, f"window{n}", rate, window)
        windows.append(window_figures)
        if window_figures["held"] or n == tries - 1:
            break
        rate *= VERIFY_STEP
    await stored_all(p, conn, f"window{len(windows) - 1}-", window_figures["conversations"])
    return {
        "per_s": window_figures["offered_per_s"] if window_figures["held"] else None,
        "held": window_figures["held"],
        "probes": probes,
        "windows": windows,
        **await usage(p, cpu_before, batches_before, window_figures["conversations"]),
    }


async def stored_all(p: Pipeline, conn: asyncpg.Connection, prefix: str, n_conv: int) -> None:
    stored = await conn.fetchval(
        f'SELECT count(*) FROM "{p.schema("ingest")}".conversations WHERE conversation_id LIKE $1',
        prefix + "%",
    )
    if stored != n_conv:
        raise RuntimeError(f"ingest answered {n_conv} accepted but stored {stored} conversations")


async def usage(
    p: Pipeline,
    cpu_before: dict[str, float],
    batches_before: dict[str, tuple[float, float, float]],
    n_conv: int,
) -> dict[str, Any]:
    """Each process's CPU and each consumer's batches since `cpu_before` / `batches_before`."""
    cpu = {name: used - cpu_before[name] for name, used in p.cpu_seconds().items()}
    batches = {
        name: [after - before for after, before in zip(totals, batches_before[name], strict=True)]
        for name, totals in (await p.batch_totals()).items()
    }
    return {
        # What each process spent per conversation over the window and its drain (`bench` is the load
        # generator and the lag sampling): on two shared cores their sum bounds the rate.
        "cpu_ms_per_conversation": {
            **{name: round(1000 * s / max(n_conv, 1), 3) for name, s in cpu.items()},
            "services_total": round(
                1000 * sum(s for name, s in cpu.items() if name != "bench") / max(n_conv, 1), 3
            ),
        },
        # Each consumer's batches over that window: how far batching spread its per-batch costs.
        "batches": {
            name: {"n": int(n), "mean_records": round(records / n, 1), "mean_ms": round(1000 * secs / n, 1)}
            for name, (n, records, secs) in batches.items()
            if n
        },
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
    cpu_before, batches_before = p.cpu_seconds(), await p.batch_totals()
    async with observed(p, conn) as observer:
        lat = await latency(p, observer, rate, window)
    await drained(p, 600)
    await stored_all(p, conn, "lat-", lat["conversations"])
    services = await usage(p, cpu_before, batches_before, lat["conversations"])
    return {
        **lat,
        **services,
        "cpu_ms_per_conversation": {**lat["cpu_ms_per_conversation"], **services["cpu_ms_per_conversation"]},
    }


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
