"""Sampler explain latency: one conversation's verdicts from a private, windowed replay of one tenant
(`qa samples explain` and GET /v1/samples/explain/{id}), beside the full replay of every stored input that
explain did before, same run, same database.

    uv run python -m bench.explain [--conversations 11000] [--explains 40]

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when both are set, else the launcher's local stack. Untimed set-up:
a fresh topic prefix and schema, one tenant, the explain test's plans (random, stratified per agent and week,
two targeted, and a new-agent rule with a monthly per-agent fallback) and the integration stream (six weeks),
consumed by a sampler process. Then `--explains` random conversations are explained one by one (the state
built and the verdicts computed), and the old way (a rebuild of every tenant's state) runs three times.
Prints JSON; the target is under 1 s for one conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
from typing import Any

from bench.common import TINY_HELP, Stopwatch, emit
from bench.platform import cleanup, servers
from qastream_sampler.explain import explain
from qastream_sampler.explain_store import PastRetention, explain_state
from qastream_sampler.store import SamplerStore
from qastream_shared.events import ConversationIngested
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, isolated_settings, produce_envelopes, settings_env
from qastream_shared.topics import CONVERSATIONS, REGISTRY, REVIEWS, ensure_topics, physical
from tests.integration.sampler_setup import install_plans
from tests.integration.test_sampler import recorded_inputs, stream
from tests.integration.test_sampler_explain import EXPLAIN_PLANS

TARGET_S = 1.0


async def main(n: int, explains: int) -> dict[str, Any]:
    db, kafka = servers()
    settings = isolated_settings(db, kafka)
    runtime = await install_plans(settings, "acme", EXPLAIN_PLANS)
    proc: asyncio.subprocess.Process | None = None
    try:
        await ensure_topics(settings)
        await add_tenant(settings, "acme")
        convs, reviews = stream("acme", n, agents=300)
        await produce_envelopes(settings, physical(CONVERSATIONS, settings), convs)
        await produce_envelopes(settings, physical(REVIEWS, settings), reviews)
        total = len(convs) + len(reviews)
        env = {
            **os.environ,
            **settings_env(settings),
            "QA_HTTP_PORT": str(free_port()),
            "QA_LOG_LEVEL": "WARNING",
        }
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "qastream_sampler", env=env)
        waited = Stopwatch()
        while await recorded_inputs(runtime) < total:
            if proc.returncode is not None or waited.stop() > 600:
                raise RuntimeError(f"sampler did not store {total} inputs (exit code {proc.returncode})")
            await asyncio.sleep(0.1)  # polling granularity of the untimed set-up
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        proc = None

        ids = [e.data.conversation.conversation_id for e in convs if isinstance(e.data, ConversationIngested)]
        picked = random.Random(1).sample(ids, min(explains, len(ids)))
        seconds = []
        explained: list[str] = []
        past = 0  # older than the retention window of the latest snapshot: a 404 saying so
        async with runtime.sessions() as session:
            for cid in picked:
                clock = Stopwatch()
                try:
                    explain(await explain_state(session, settings, "acme", cid), cid)
                except PastRetention:
                    past += 1
                    continue
                seconds.append(clock.stop())
                explained.append(cid)
            partitions = next(t.partitions for t in REGISTRY if t.name == CONVERSATIONS)
            rebuilds = []
            for _ in range(3):
                clock = Stopwatch()
                # the old way to explain: a rebuild (snapshot + every input after it) keeping every conversation
                full = SamplerStore(settings, partitions, retain=False)
                await full.rebuild(session)
                explain(full.states["acme"], explained[0])
                rebuilds.append(clock.stop())
    finally:
        if proc is not None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
        await cleanup(runtime, settings)
    seconds.sort()
    p50, p95 = statistics.median(seconds), seconds[min(len(seconds) - 1, int(len(seconds) * 0.95))]
    baseline = statistics.median(rebuilds)
    return {
        "conversations": len(ids),
        "stored_inputs": total,
        "past_retention": past,
        "explain_windowed": {
            "n": len(seconds),
            "p50_s": round(p50, 4),
            "p95_s": round(p95, 4),
            "max_s": round(seconds[-1], 4),
        },
        "baseline_full_rebuild_s": round(baseline, 4),
        "p50_over_baseline": round(p50 / baseline, 3),
        "target_s": TARGET_S,
        "met": p95 < TARGET_S,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=11_000)
    parser.add_argument("--explains", type=int, default=40)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    emit(asyncio.run(main(200, 3) if args.tiny else main(args.conversations, args.explains)))
