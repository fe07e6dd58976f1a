"""Helpers shared by the benchmarks: timing, rates and the JSON they print."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic


@dataclass
class Stopwatch:
    """Wall time from creation (or `restart`) to `stop`, and the rate of `n` items over it."""

    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0

    def restart(self) -> None:
        self.started = time.perf_counter()

    def stop(self) -> float:
        self.seconds = time.perf_counter() - self.started
        return self.seconds


def percentile(samples_ms: Sequence[float], q: int, digits: int = 1) -> float | None:
    """The q-th percentile by linear interpolation inside the samples' own range (so p99 of few samples never
    exceeds their max), None without samples."""
    if len(samples_ms) < 2:
        return round(samples_ms[0], digits) if samples_ms else None
    return round(statistics.quantiles(samples_ms, n=100, method="inclusive")[q - 1], digits)


def percentiles(
    samples_ms: Sequence[float], cuts: Sequence[int] = (50, 90, 99), digits: int = 1
) -> dict[str, Any]:
    """n, the percentiles named by `cuts` and the max: every latency a bench prints, computed one way."""
    if not samples_ms:
        return {"n": 0}
    cut = statistics.quantiles(samples_ms, n=100, method="inclusive") if len(samples_ms) > 1 else None
    out: dict[str, Any] = {"n": len(samples_ms)}
    for q in cuts:
        out[f"p{q}_ms"] = round(cut[q - 1] if cut else samples_ms[0], digits)
    out["max_ms"] = round(max(samples_ms), digits)
    return out


def rate(n: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"messages": n, "seconds": round(seconds, 3), "per_s": round(n / seconds, 1), **extra}


def ratio(numerator: float, denominator: float, target: float) -> dict[str, Any]:
    value = numerator / denominator
    return {"value": round(value, 3), "target": target, "met": value >= target}


async def create_topic(bootstrap: str, name: str, partitions: int = 3) -> None:
    """A raw baseline's own topic: the launcher's broker never auto-creates one (auto.create.topics.enable
    is off). Under the run's topic prefix, so the bench's clean-up deletes it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


TINY_HELP = "the smallest sizes, for the CI smoke run (tests/integration/test_bench_smoke.py)"


def emit(result: dict[str, Any]) -> None:
    """The benchmark's only stdout output: one JSON document, so it can be piped or diffed."""
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
