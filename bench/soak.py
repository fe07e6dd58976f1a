"""Soak: the whole pipeline at a steady rate for a long time; memory, lag and latency must stay flat.

    uv run python -m bench.soak --minutes 20 --rate 200     # writes docs/soak.png
    uv run python -m bench.soak --tiny                      # CI smoke: 12 s, the PNG to a temporary file

Same five processes and set-up as bench.pipeline (its `Pipeline`, on the stack of KAFKA_BOOTSTRAP_SERVERS /
DATABASE_URL or the launcher's). Real STAR conversations with fresh ids are posted open-loop at `--rate` per
second, in a batch every 200 ms (the default, 200/s, is half the sustained rate bench.pipeline measured).

Weeks of traffic in minutes: each conversation's turn times are moved so that it ends at a simulated event
time running `--days-per-minute` days per minute of the run and reaching the wall clock at its end. Memory
flat "after warm-up" means after the sampler's late window (14 days of event time) has filled: with the
STAR turn times as recorded (15 days of 2020, cycled), its watermark stopped after the first cycle,
retention never ran again, and every conversation of the run stayed in its state. Scoring stamps auto
reviews with the wall clock, so the sampler takes those of conversations older than its late window before
the end as late (ignored, as any late review); the conversations themselves are sampled as usual.

Every `--every` seconds it records each service's RSS (VmRSS of its process), the five consumer groups'
summed lag, and the p50/p99 from ingest's 202 to the auto review stored by scoring (`scored`) and by
reporting (`reported`) of the conversations heard in that interval (bench.pipeline's commit observer: a
notification at commit, heard in a process of its own). Prints JSON:
- samples: one per interval;
- rss_drift: per service, the mean RSS of the last quarter over that of the second quarter (after warm-up),
  minus one; the soak's claim is |drift| <= 0.15 (`met`);
- lag: max and last sample (bounded: no upward trend over the run);
- dead_lettered: records on each service's DLQ topic at the end (should all be 0); refused: conversations
  ingest answered other than 202, by status (at most 8 posts are in flight; the rest wait);
- load: the generator's own CPU per conversation posted (this process), the observer process's, and how
  late the generator's ticks fired (p99, max), so that it is seen not to be the limit;
- raw_ping_pong: one record produced and consumed before the next, on the same broker in the same run: the
  floor of one hop, beside which the per-interval p99s are read (`scored_p99_over_ping_pong_p99`).
Also writes a PNG (matplotlib) of RSS per service and lag over time (`--png`, default docs/soak.png).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from bench.commit_observer import Observer
from bench.common import emit, percentile
from bench.pipeline import observed
from bench.pipeline_stack import SERVICES, Pipeline, percentiles, ping_pong, warm_pipeline
from qastream_shared.testing import star_records
from qastream_shared.topics import dlq, physical
from tests.integration.conftest_ingest import star_stream, take

TICK_S = 0.2
MAX_IN_FLIGHT = 8  # posts awaiting ingest's answer; past that the offered rate drops (reported)
DOCS_PNG = Path(__file__).resolve().parents[1] / "docs" / "soak.png"


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Tracker:
    """Accept time of each posted conversation, and when its auto review was heard committing in scoring's
    schema (`scored`) and in reporting's (`reported`), by bench.pipeline's commit observer: a notification
    at commit, in a process of its own, so nothing here polls a query that grows with what is awaited."""

    STAGES = ("scored", "reported")

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self.accepted_at: dict[str, float] = {}
        self.pending: dict[str, set[str]] = {stage: set() for stage in self.STAGES}
        self.interval: dict[str, list[float]] = {stage: [] for stage in self.STAGES}
        self.all: dict[str, list[float]] = {stage: [] for stage in self.STAGES}

    def posted(self, ids: list[str], at: float) -> None:
        for cid in ids:
            self.accepted_at[cid] = at
            for waiting in self.pending.values():
                waiting.add(cid)

    def take_interval(self) -> dict[str, Any]:
        """The latencies of the conversations heard at each stage since the last call."""
        for stage, waiting in self.pending.items():
            seen = self.observer.seen.get(stage, {})
            for cid in [cid for cid in waiting if cid in seen]:
                waiting.discard(cid)
                ms = (seen.pop(cid) - self.accepted_at[cid]) * 1000
                self.interval[stage].append(ms)
                self.all[stage].append(ms)
                if not any(cid in w for w in self.pending.values()):
                    del self.accepted_at[cid]
        out = {f"{n}_p{q}_ms": percentile(v, q) for n, v in self.interval.items() for q in (50, 99)}
        self.interval = {stage: [] for stage in self.STAGES}
        return out


async def dead_lettered(p: Pipeline) -> dict[str, int]:
    tps = {name: TopicPartition(physical(dlq(name), p.base), 0) for name in SERVICES}
    ends = await p.ends.end_offsets(list(tps.values()))
    return {name: ends[tp] for name, tp in tps.items()}


class EventClock:
    """The run's simulated event time: `days_per_minute` days per minute of the run, at the wall clock at the
    run's end (never ahead of it: the sampler's retention follows the lower of the conversations' watermark
    and the reviews', which scoring stamps with the wall clock)."""

    def __init__(self, minutes: float, days_per_minute: float) -> None:
        self.speed = days_per_minute * 1440  # event seconds per second of the run
        self.started = time.perf_counter()
        self.origin = datetime.now(UTC) + timedelta(minutes=minutes) * (1 - self.speed)

    def now(self) -> datetime:
        return self.origin + timedelta(seconds=(time.perf_counter() - self.started) * self.speed)


def retimed(prefix: str, clock: EventClock | None) -> Iterator[dict[str, Any]]:
    """Real STAR conversations under fresh ids (`star_stream`), each moved to end at `clock.now()`."""
    if clock is None:
        yield from star_stream(prefix)
        return
    records = list(star_records())
    offsets = []  # each turn's time relative to the conversation's last timestamped turn
    for r in records:
        times = [datetime.fromisoformat(t["ts"]) if t.get("ts") else None for t in r["turns"]]
        end = max((t for t in times if t is not None), default=None)
        offsets.append([None if t is None or end is None else t - end for t in times])
    for n in itertools.count():
        i = n % len(records)
        at = clock.now()
        turns = [
            t if off is None else {**t, "ts": (at + off).isoformat()}
            for t, off in zip(records[i]["turns"], offsets[i], strict=True)
        ]
        yield {**records[i], "conversation_id": f"{prefix}-{n}", "turns": turns}


async def soak(
    p: Pipeline,
    observer: Observer,
    minutes: float,
    rate: float,
    every: float,
    days_per_minute: float,
) -> dict[str, Any]:
    clock = EventClock(minutes, days_per_minute) if days_per_minute > 0 else None
    stream = retimed("soak", clock)
    tracker = Tracker(observer)
    pids = {name: svc.pid for name, svc in p.live.items()}
    samples: list[dict[str, Any]] = []
    per_tick = max(1, round(rate * TICK_S))
    tick_s = per_tick / rate
    start = time.perf_counter()
    end = start + minutes * 60
    sent: list[asyncio.Task[None]] = []
    late_ms: list[float] = []  # how late each tick fired: the generator keeping its schedule
    cpu_before = psutil.Process().cpu_times()

    refused: dict[str, int] = {}
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> None:
        async with in_flight:
            r = await client.post("/v1/conversations", content=orjson.dumps({"conversations": batch}))
        if r.status_code != 202:  # counted and reported: a soak that stops at the first error shows nothing
            refused[str(r.status_code)] = refused.get(str(r.status_code), 0) + len(batch)
            return
        tracker.posted([c["conversation_id"] for c in batch], time.perf_counter())

    async def record() -> None:
        next_at = start + every
        while next_at <= end:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            p.alive()
            samples.append(
                {
                    "t_s": round(time.perf_counter() - start, 1),
                    "rss_mb": {name: rss_mb(pid) for name, pid in pids.items()},
                    "lag": await p.lag(),
                    **tracker.take_interval(),
                }
            )
            next_at += every

    observer_before = observer.cpu_seconds()
    tasks = [asyncio.create_task(record())]
    async with p.client() as client:
        tick = 0
        while (scheduled := start + tick * tick_s) < end:
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            late_ms.append((time.perf_counter() - scheduled) * 1000)
            sent.append(asyncio.create_task(one(client, take(stream, per_tick))))
            tick += 1
        await asyncio.gather(*sent)
        offered_s = time.perf_counter() - start
    await asyncio.gather(*tasks)
    cpu = psutil.Process().cpu_times()
    used_s = cpu.user + cpu.system - cpu_before.user - cpu_before.system
    observer_s = observer.cpu_seconds() - observer_before
    return {
        "offered_per_s": round(per_tick * tick / offered_s, 1),
        "conversations": per_tick * tick,
        "event_days": round(minutes * days_per_minute, 1) if clock else None,
        "refused": refused,
        "load": {
            "bench_cpu_ms_per_conversation": round(1000 * used_s / max(1, per_tick * tick), 3),
            "bench_cpu_share_of_one_core": round(used_s / offered_s, 3),
            "observer_cpu_ms_per_conversation": round(1000 * observer_s / max(1, per_tick * tick), 3),
            "tick_late_ms": {"p99": percentile(late_ms, 99), "max": round(max(late_ms, default=0.0), 1)},
        },
        "samples": samples,
        "scored": percentiles(tracker.all["scored"]),
        "reported": percentiles(tracker.all["reported"]),
    }


def drift(samples: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per service: mean RSS of the last quarter over the second quarter's (after warm-up), minus one."""
    q = len(samples) // 4
    if q == 0:
        return {name: None for name in SERVICES}
    out: dict[str, float | None] = {}
    for name in SERVICES:
        early = statistics.mean(s["rss_mb"][name] for s in samples[q : 2 * q])
        late = statistics.mean(s["rss_mb"][name] for s in samples[3 * q :])
        out[name] = round(late / early - 1, 3)
    return out


def plot(samples: list[dict[str, Any]], title: str, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["t_s"] / 60 for s in samples]
    fig, (mem, lag) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    for name in SERVICES:
        mem.plot(minutes, [s["rss_mb"][name] for s in samples], label=name)
    mem.set_ylabel("RSS (MB)")
    mem.set_ylim(bottom=0)
    mem.legend(loc="lower right", ncol=5, fontsize=8)
    mem.set_title(title)
    lag.plot(minutes, [s["lag"] for s in samples], color="tab:red", label="consumer lag (records)")
    lag.set_ylabel("lag (records)", color="tab:red")
    lag.set_ylim(bottom=0)
    p99 = lag.twinx()
    p99.plot(minutes, [s["scored_p99_ms"] for s in samples], color="tab:gray", lw=0.8)
    p99.set_ylabel("p99 ingest→scored per interval (ms)", color="tab:gray")
    p99.set_ylim(bottom=0)
    lag.set_xlabel("minutes")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


async def main(
    minutes: float, rate: float, every: float, png: Path, days_per_minute: float = 4.0
) -> dict[str, Any]:
    async with warm_pipeline() as (p, conn):
        async with observed(p, conn, Tracker.STAGES) as observer:
            run = await soak(p, observer, minutes, rate, every, days_per_minute)
        dead = await dead_lettered(p)
        pong_topic = physical("bench.pingpong", p.base)
        await p.admin.create_topics([NewTopic(pong_topic, 1, 1)])
        pong = await ping_pong(p.base, pong_topic, 100)
    samples = run["samples"]
    rss = drift(samples)
    lags = [s["lag"] for s in samples]
    days = f", {run['event_days']:g} days of event time" if run["event_days"] else ""
    plot(samples, f"soak: {run['offered_per_s']:g} conversations/s for {minutes:g} min{days}", png)
    return {
        "minutes": minutes,
        "rate_per_s": rate,
        **{k: v for k, v in run.items() if k != "samples"},
        "rss_drift": rss,
        "lag": {"max": max(lags, default=0), "last": lags[-1] if lags else None},
        "dead_lettered": dead,
        "raw_ping_pong": pong,
        "scored_p99_over_ping_pong_p99": round((run["scored"].get("p99_ms") or 0) / pong["p99_ms"], 1),
        "met": {
            "rss_within_15_percent": all(d is not None and abs(d) <= 0.15 for d in rss.values()),
            "nothing_dead_lettered": not any(dead.values()),
            "nothing_refused": not run["refused"],
        },
        "png": str(png),
        "samples": samples,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument(
        "--rate", type=float, default=200.0, help="conversations per second, offered (half of ~408 sustained)"
    )
    parser.add_argument(
        "--days-per-minute", type=float, default=4.0, help="simulated event days per minute (0: STAR's own)"
    )
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--png", type=Path, default=DOCS_PNG)
    parser.add_argument("--tiny", action="store_true", help="CI smoke: 12 s at 5/s, PNG to a temporary file")
    a = parser.parse_args()
    if a.tiny:
        with tempfile.TemporaryDirectory() as tmp:
            emit(asyncio.run(main(0.2, 5.0, 1.5, Path(tmp) / "soak.png")))
        return
    emit(asyncio.run(main(a.minutes, a.rate, a.every, a.png, a.days_per_minute)))


if __name__ == "__main__":
    cli()
