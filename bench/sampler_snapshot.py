"""The memory a sampler state snapshot costs its process: written in chunks (`snapshot_store.save`) against
the format-1 way, the whole state pickled into one block and then handed to the INSERT, as the raw baseline.

    uv run python -m bench.sampler_snapshot [--conversations 240000] [--saves 3]
    uv run python -m bench.sampler_snapshot --tiny

Each way runs in its own fresh process (RSS is a high-water mark: a second way measured in the same process
would hide under the first one's), on the project's stack (DATABASE_URL, or the launcher's PostgreSQL), in a
schema of its own. The state: `--conversations` synthetic conversations of 2,000 agents over two weeks under
three plans (a random rate, 5 per agent-week, 12 per team-week in 4 slots), closed daily, never pruned: the
default is the soak's 20 minutes at 200/s. Then `--saves` snapshots of that same state in a row. Per way:
the process's RSS before the first save and after each (after a gc), the step (after the last minus before),
the peak RSS while saving over RSS before (VmHWM, reset before the first save), tracemalloc's peak of the
saves' own allocations, and the seconds per save.

The `fork` way is the save as the sampler runs it since it moved beside the batch: `snapshot_fork.start` on
the built store, twice, the parent sampling both processes every 20 ms (psutil) until the child exits: the
child's USS (its private pages: what it copied by writing reference counts) and PSS, the parent's RSS and
USS, and the two together (USS summed; PSS summed, which counts each page the two share once, as the
container's memory cgroup charges it). Against the parent's RSS before the fork. The first time the parent
waits; the second it runs a full collection right after the fork, as its collector's oldest generation does
between batches (it writes every tracked object's header, so the parent copies those pages). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import pickle
import random
import subprocess
import sys
import time
import tracemalloc
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text

from bench.common import TINY_HELP, emit
from bench.platform import servers
from bench.sampler_engine import CONFIG, PLANS
from qastream_sampler import snapshot_fork
from qastream_sampler.app import SPEC
from qastream_sampler.engine import SamplerState, close, observe_conversation
from qastream_sampler.plans import parse_plan
from qastream_sampler.snapshot_store import save
from qastream_sampler.store import SamplerStore
from qastream_shared.db import drop_schema
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import isolated_settings
from tests.unit.sampler.sampler_synth import CHANNELS, T0, TENANT, conversation

WAYS = ("chunks", "pickle", "fork")
MB = 2**20
SAMPLE_EVERY_S = 0.02
AGENTS = 2000
_LEFT_OUT = {"plans", "plan_versions", "auto_policy", "_active"}


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)


def state_of(n: int) -> SamplerState:
    """Conversations made one at a time and dropped once observed: a population list freed before the saves
    would leave free heap that a save could reuse without its RSS growing, hiding the step."""
    st = SamplerState(TENANT)
    for plan in PLANS:
        st.put_plan(parse_plan(plan))
    rng = random.Random(7)
    weights = list(itertools.accumulate(rng.paretovariate(1.5) for _ in range(AGENTS)))
    step = timedelta(weeks=2) / n
    closed = T0
    for i in range(n):
        a = rng.choices(range(AGENTS), cum_weights=weights)[0]
        t = T0 + step * i
        e = conversation(f"c{i:07d}", t, agent=f"a{a:04d}", team=f"team{a % 7}", channel=CHANNELS[i % 3])
        observe_conversation(st, e, partition_high=None, config=CONFIG)
        if t - closed > timedelta(days=1):
            close(st, t - CONFIG.grace, config=CONFIG)
            closed = t
    return st


async def save_pickled(runtime: ServiceRuntime, store: SamplerStore) -> None:
    """Format 1: every kept field of the state in one pickle, inserted as one row (the raw baseline)."""
    st = store.states[TENANT]
    body = pickle.dumps(
        {f.name: getattr(st, f.name) for f in fields(SamplerState) if f.name not in _LEFT_OUT},
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    async with runtime.unit_of_work() as uow:
        await uow.session.execute(text("DELETE FROM pickled"))
        await uow.session.execute(text("INSERT INTO pickled VALUES (:t, :b)"), {"t": TENANT, "b": body})


def watch_fork(store: SamplerStore, settings: Settings, schema: str, *, collect: bool) -> dict[str, Any]:
    """One forked save, the parent sampling both processes' memory until the child exits."""
    me = psutil.Process()
    started = time.perf_counter()
    pid = snapshot_fork.start(store, settings, schema)
    fork_ms = (time.perf_counter() - started) * 1000
    if collect:
        gc.collect()
    child = psutil.Process(pid)
    peak = dict.fromkeys(("child_uss", "child_pss", "parent_rss", "parent_uss", "uss_sum", "pss_sum"), 0.0)
    samples = 0
    while (status := snapshot_fork.finished(pid)) is None:
        try:
            c, p = child.memory_full_info(), me.memory_full_info()
        except psutil.NoSuchProcess:  # exited (a zombie) between the poll and the read
            continue
        now = {
            "child_uss": c.uss, "child_pss": c.pss, "parent_rss": p.rss, "parent_uss": p.uss,
            "uss_sum": c.uss + p.uss, "pss_sum": c.pss + p.pss,
        }  # fmt: skip
        peak = {k: max(v, now[k] / MB) for k, v in peak.items()}
        samples += 1
        time.sleep(SAMPLE_EVERY_S)
    if status != snapshot_fork.WRITTEN:
        raise RuntimeError(f"the snapshot's child exited with {status}")
    return {
        "fork_ms": round(fork_ms, 1),
        "seconds": round(time.perf_counter() - started, 3),
        "samples": samples,
        **{f"peak_{k}_mb": round(v, 1) for k, v in peak.items()},
    }


async def fork_way(n: int) -> dict[str, Any]:
    db, kafka = servers()
    settings = isolated_settings(db, kafka)
    runtime = ServiceRuntime(SPEC, settings)
    await migrate(settings, runtime.schema, SPEC.migrations)
    try:
        store = SamplerStore(settings, 3)
        store.states[TENANT] = state_of(n)
        gc.collect()
        before = psutil.Process().memory_full_info()
        runs = {}
        for i, parent in enumerate(("waits", "collects")):
            # each snapshot must cover more than the latest, or the child writes nothing
            store.cursors = {("qa.conversations", p): n + i for p in range(3)}
            runs[parent] = watch_fork(store, settings, runtime.schema, collect=parent == "collects")
        rss = before.rss / MB
        return {
            "parent_before_mb": {"rss": round(rss, 1), "uss": round(before.uss / MB, 1)},
            **runs,
            "peak_pss_sum_over_rss_before": {
                k: round(r["peak_pss_sum_mb"] / rss, 3) for k, r in runs.items()
            },
            "peak_uss_sum_over_rss_before": {
                k: round(r["peak_uss_sum_mb"] / rss, 3) for k, r in runs.items()
            },
        }
    finally:
        await drop_schema(runtime.engine, runtime.schema)
        await runtime.engine.dispose()


async def one_way(way: str, n: int, saves: int) -> dict[str, Any]:
    db, kafka = servers()
    settings = isolated_settings(db, kafka)
    runtime = ServiceRuntime(SPEC, settings)
    await migrate(settings, runtime.schema, SPEC.migrations)
    try:
        async with runtime.unit_of_work() as uow:
            await uow.session.execute(text("CREATE TABLE pickled (tenant_id text PRIMARY KEY, body bytea)"))
        store = SamplerStore(settings, 3)
        st = store.states[TENANT] = state_of(n)
        store.cursors = {("qa.conversations", p): n for p in range(3)}
        gc.collect()
        before = rss_mb()
        reset_peak()
        after: list[float] = []
        seconds: list[float] = []
        tracemalloc.start()
        for _ in range(saves):
            started = time.perf_counter()
            if way == "chunks":
                async with runtime.unit_of_work() as uow:
                    await save(uow.session, store)
            else:
                await save_pickled(runtime, store)
            seconds.append(round(time.perf_counter() - started, 3))
            gc.collect()
            after.append(round(rss_mb(), 1))
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        async with runtime.sessions() as s:
            table = "snapshot_chunks" if way == "chunks" else "pickled"
            stored = (await s.execute(text(f"SELECT count(*), sum(octet_length(body)) FROM {table}"))).one()
        return {
            "state": {
                "conversations": len(st.conversations),
                "log": len(st.log),
                "pools": len(st.pools),
                "candidates": sum(len(p.candidates) for p in st.pools.values()),
            },
            "rows_written": stored[0],
            "mb_written": round(stored[1] / 2**20, 1),
            "rss_before_mb": round(before, 1),
            "rss_after_each_save_mb": after,
            "rss_step_mb": round(after[-1] - before, 1),
            "peak_over_before_mb": round(rss_mb("VmHWM") - before, 1),
            "tracemalloc_peak_mb": round(traced_peak / 2**20, 1),
            "seconds_per_save": seconds,
        }
    finally:
        await drop_schema(runtime.engine, runtime.schema)
        await runtime.engine.dispose()


def main(n: int, saves: int) -> dict[str, Any]:
    out: dict[str, Any] = {"conversations": n, "saves": saves}
    for way in WAYS:
        done = subprocess.run(
            [sys.executable, "-m", "bench.sampler_snapshot", "--way", way, "--conversations", str(n),
             "--saves", str(saves)],
            capture_output=True, text=True, check=True, env=os.environ,
        )  # fmt: skip
        out[way] = json.loads(done.stdout)
    out["baseline"] = "pickle: the whole state in one block, as format 1 wrote it"
    chunks, pickled = out["chunks"], out["pickle"]
    out["rss_step_chunks_over_pickle"] = (
        round(chunks["rss_step_mb"] / pickled["rss_step_mb"], 3) if pickled["rss_step_mb"] else None
    )
    out["peak_chunks_over_pickle"] = (
        round(chunks["peak_over_before_mb"] / pickled["peak_over_before_mb"], 3)
        if pickled["peak_over_before_mb"]
        else None
    )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=240_000)
    parser.add_argument("--saves", type=int, default=3)
    parser.add_argument("--way", choices=WAYS, help="one way in this process (the parent runs each so)")
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    a = parser.parse_args()
    n = 2_000 if a.tiny else a.conversations
    if a.way == "fork":
        emit(asyncio.run(fork_way(n)))
    elif a.way:
        emit(asyncio.run(one_way(a.way, n, a.saves)))
    else:
        emit(main(n, a.saves))
