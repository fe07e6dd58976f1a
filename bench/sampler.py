"""Sampler throughput: one `python -m qastream_sampler` process (consume → decide → store → publish) next to
raw aiokafka consumption of the same topic, same run, same broker.

    uv run python -m bench.sampler [--conversations 30000] [--batch N (default: the sampler's own)]

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when both are set, else starts (or reuses) the launcher's local
stack. Untimed set-up: a fresh topic prefix and schema, one tenant, the integration test's plans (random,
stratified per agent and week, two targeted) and its synthetic stream (conversations over six weeks with
CSAT, escalations and auto reviews on qa.reviews). Then a sampler process starts and the clock runs from its
first committed batch (the inbox's first `processed_at`) to the moment every input is stored with its
decisions (the same transaction), and to the last ConversationSampled published by the outbox relay.
The sampler's PID goes to stderr, for `uv run py-spy record -d 20 -p PID -o /tmp/s.svg`. Prints JSON;
the target is >= 5,000 conversations/s through the sampler.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import datetime
from typing import Any

import psutil
from sqlalchemy import func, select

from bench.common import TINY_HELP, Stopwatch, emit, rate
from bench.platform import cleanup, raw_consume, servers
from qastream_sampler.app import SPEC
from qastream_sampler.tables import sample_log
from qastream_shared.events import ConversationIngested
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, isolated_settings, produce_envelopes, settings_env
from qastream_shared.topics import CONVERSATIONS, REVIEWS, ensure_topics, physical
from tests.integration.sampler_setup import install_plans
from tests.integration.test_sampler import PLANS, recorded_inputs, stream

TARGET = 5_000.0


async def main(n: int, batch: int | None) -> dict[str, Any]:
    db, kafka = servers()
    settings: Settings = isolated_settings(db, kafka)
    batch = batch or SPEC.consumer_batch_size or settings.consumer_batch_size
    conversations_topic = physical(CONVERSATIONS, settings)
    runtime = await install_plans(settings, "acme", PLANS)
    proc: asyncio.subprocess.Process | None = None
    try:
        await ensure_topics(settings)
        await add_tenant(settings, "acme")
        convs, reviews = stream("acme", n, agents=300)
        await produce_envelopes(settings, conversations_topic, convs)
        await produce_envelopes(settings, physical(REVIEWS, settings), reviews)
        total = len(convs) + len(reviews)
        raw = await raw_consume(settings, conversations_topic, len(convs))
        n_conv = sum(isinstance(e.data, ConversationIngested) for e in convs)

        env = {
            **os.environ,
            **settings_env(settings),
            "QA_HTTP_PORT": str(free_port()),
            "QA_CONSUMER_BATCH_SIZE": str(batch),
            "QA_LOG_LEVEL": "WARNING",
        }
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "qastream_sampler", env=env)
        print(f"sampler pid {proc.pid}", file=sys.stderr)
        inbox, outbox = runtime.tables["inbox"], runtime.tables["outbox"]
        sampler = psutil.Process(proc.pid)
        cpu_from: tuple[float, int] | None = None  # (CPU seconds, inputs stored) once start-up is over
        while (stored_count := await recorded_inputs(runtime)) < total:
            if proc.returncode is not None:
                raise RuntimeError(f"sampler exited with {proc.returncode}")
            if cpu_from is None and stored_count:
                cpu_from = (_cpu_seconds(sampler), stored_count)
            await asyncio.sleep(0.02)  # polling granularity of the measurement
        stored_at = time.time()
        cpu_used = _cpu_seconds(sampler) - cpu_from[0] if cpu_from else None
        cpu_events = total - cpu_from[1] if cpu_from else 0
        waited = Stopwatch()
        while True:
            async with runtime.sessions() as s:
                unpublished = (
                    await s.execute(select(func.count()).where(outbox.c.published_at.is_(None)))
                ).scalar_one()
            if not unpublished:
                break
            if waited.stop() > 120:
                raise RuntimeError(f"{unpublished} samples still unpublished")
            await asyncio.sleep(0.02)
        async with runtime.sessions() as s:
            first: datetime = (await s.execute(select(func.min(inbox.c.processed_at)))).scalar_one()
            published: datetime = (await s.execute(select(func.max(outbox.c.published_at)))).scalar_one()
            decisions = int((await s.execute(select(func.count()).select_from(sample_log))).scalar_one())
        start = first.timestamp()
        stored = stored_at - start
        conv_rate = n_conv / stored
    finally:
        if proc is not None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
        await cleanup(runtime, settings)
    return {
        "kafka": kafka,
        "raw_consume": raw,
        "sampler": {
            **rate(total, stored, batch=batch),
            "conversations": n_conv,
            "feedback_and_reviews": total - n_conv,
            "conversations_per_s": round(conv_rate, 1),
            "decisions": decisions,
            "decisions_per_s": round(decisions / stored, 1),
            "seconds_to_last_published": round(published.timestamp() - start, 3),
            # Noise-resistant: sampler-process CPU per consumed event (decide, store, and the relay so far).
            "cpu_us_per_event": round(cpu_used / cpu_events * 1e6, 1) if cpu_used and cpu_events else None,
        },
        "sampler_over_raw_consume": round(total / stored / raw["per_s"], 3),
        "target_conversations_per_s": TARGET,
        "met": conv_rate >= TARGET,
    }


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    emit(asyncio.run(main(300 if args.tiny else args.conversations, args.batch)))
