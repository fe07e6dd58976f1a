"""Open-loop load on the pipeline and the search for the rate it holds (bench.pipeline's `sustained`).

A rate is *held* when ingest answered every post by the end of the window (+5%, at least 1 s) and no
consumer group's lag grew: over the window after its first quarter, each group's lag slope (least squares
over a sample every 0.5 s) is at most 5% of the records arriving on its topics, or the rise it fits over
that span is within one consumer batch (the sawtooth of batches tilts a short fit).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import psutil

from bench.pipeline_stack import SERVICES, Counters, Pipeline, drained, post
from tests.integration.conftest_ingest import star_stream, take

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
        before = await p.counters()
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
        **await usage(p, before, window_figures["conversations"]),
    }


async def stored_all(p: Pipeline, conn: asyncpg.Connection, prefix: str, n_conv: int) -> None:
    stored = await conn.fetchval(
        f'SELECT count(*) FROM "{p.schema("ingest")}".conversations WHERE conversation_id LIKE $1',
        prefix + "%",
    )
    if stored != n_conv:
        raise RuntimeError(f"ingest answered {n_conv} accepted but stored {stored} conversations")


async def usage(p: Pipeline, before: Counters, n_conv: int) -> dict[str, Any]:
    """Each process's CPU, each consumer's batches and each service's garbage collections since `before`."""
    after = await p.counters()
    cpu = {name: used - before.cpu[name] for name, used in after.cpu.items()}
    seconds = after.at - before.at
    batches = {
        name: [a - b for a, b in zip(totals, before.batches[name], strict=True)]
        for name, totals in after.batches.items()
    }
    return {
        # What each process spent per conversation over the window and its drain (`bench` is the load
        # generator and the lag sampling): on two shared cores their sum bounds the rate.
        "cpu_ms_per_conversation": {
            **{name: round(1000 * s / max(n_conv, 1), 3) for name, s in cpu.items() if name != "stolen"},
            "services_total": round(1000 * sum(cpu[name] for name in SERVICES) / max(n_conv, 1), 3),
        },
        # How many of the machine's cores were busy on average (everything on it, not only these processes),
        # and how many the host took for other guests: `machine` ms per conversation is also the cores a
        # rate of 1,000/s would keep busy at this cost.
        "machine": {
            "cores": psutil.cpu_count(),
            "busy_cores": round(cpu["machine"] / seconds, 2),
            "stolen_cores": round(cpu["stolen"] / seconds, 2),
        },
        # What the database was asked to do per conversation, all schemas together (the bench's own
        # queries included): its CPU above follows these.
        "database_per_conversation": {
            name: round((a - b) / max(n_conv, 1), 2)
            for name, a, b in zip(("commits", "rows_written"), after.database, before.database, strict=True)
        },
        # Each consumer's batches over that window: how far batching spread its per-batch costs.
        "batches": {
            name: {"n": int(n), "mean_records": round(records / n, 1), "mean_ms": round(1000 * secs / n, 1)}
            for name, (n, records, secs) in batches.items()
            if n
        },
        # Each service's cyclic collections over that window, by generation: how many, their total time and
        # how many held the process longer than 10, 50 and 100 ms (every record in flight waits them out).
        "gc": {
            name: {
                gen: {
                    "n": int(found.get("count", 0) - was.get("count", 0)),
                    "total_ms": round(1000 * (found.get("sum", 0) - was.get("sum", 0)), 1),
                    **{
                        f"over_{ms}ms": int(
                            found.get(f"over_{ms / 1000:g}", 0) - was.get(f"over_{ms / 1000:g}", 0)
                        )
                        for ms in (10, 50, 100)
                    },
                }
                for gen, found in gens.items()
                if found.get("count", 0) > (was := before.gc[name].get(gen, {})).get("count", 0)
            }
            for name, gens in after.gc.items()
        },
    }
