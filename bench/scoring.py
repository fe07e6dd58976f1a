"""Scoring throughput: AutoQA conversations/s through one scoring process, next to raw consume and pure scoring.

    uv run python -m bench.scoring [--messages 10000] [--rounds 1] [--profile /tmp/scoring.speedscope.json]

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when both are set, else starts (or reuses) the launcher's
local stack. Everything runs in a fresh topic prefix and schema, dropped at the end. Untimed set-up: a
tenant on qa.tenants and `--messages` ConversationSampled(purpose auto) events on qa.samples, cycling the
STAR conversations under unique ids. Prints JSON:
- raw_consume: aiokafka getmany() over those qa.samples records, the consumer's batch size, no processing;
- score_conversation: the pure AutoQA call in this process over the same conversations (or the first
  `--pure`), after an untimed warm-up over a few; default scorecard and settings; the per-text caches
  emptied before each pass, so the pass with pCSAT does not reuse what the one without computed;
- service: one `python -m qastream_scoring` process consuming them (default batch of 500, as raw_consume).
  Timed from the first review row seen in the database to all of them stored and as many ReviewSubmitted
  records on qa.reviews (the outbox relay's publish included); the rows already there at the first sight
  are not counted, so start-up and the first batch's cold caches stay out of the rate. Target >= 800/s.
  stored_per_s stops the clock when the table is first counted at n (counted every 0.1 s, so the clock
  reads up to that late; the rate's clock reads the topic's end offsets every 10 ms); cpu_utilisation and
  cpu_ms_per_conversation are the process's CPU time over the same span. Afterwards (untimed) qa.reviews
  must hold exactly one record per conversation;
- service_over_raw_consume and service_over_score_conversation: how much of each bound the service reaches.
- without_pcsat: the same conversations through a second process with QA_PCSAT_ENABLED=false, run first in
  fresh topics and schema, and score_conversation without the pCSAT prediction: `service_with_over_without`
  is pCSAT's cost on throughput (target >= 0.9, i.e. at most a 10% drop), `service_cpu_without_over_with`
  the same from CPU ms per conversation (steadier on a shared machine). The figures above include pCSAT.
- rounds and median (`--rounds N`, N > 1): pCSAT's three ratios for each of N such pairs, which alternate
  which side runs first, and their medians with the target judged on the median service rate ratio: one pair
  swings by ±0.1 on a shared machine.
`--profile PATH` runs py-spy (speedscope format) on the scoring process while it works.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select

from bench.common import TINY_HELP, Stopwatch, emit, rate, ratio
from bench.platform import BATCH, PARTITIONS, cleanup, raw_consume, servers
from qastream_scoring.app import SPEC
from qastream_scoring.autoqa import DEFAULT_REGISTRY, prepare
from qastream_scoring.autoqa.base import forget_occurrences, token_set, word_runs
from qastream_scoring.autoqa.resolution import CUES
from qastream_scoring.autoqa.sentiment import empathic
from qastream_scoring.autoqa.spelling import misspelled
from qastream_scoring.autoqa.vader import clear_verdicts, compound
from qastream_scoring.autoqa_runner import AutoQARunner
from qastream_scoring.default_scorecard import default_scorecard
from qastream_scoring.pcsat import current as pcsat_model
from qastream_scoring.tables import reviews
from qastream_shared.conversation import Conversation
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.scorecard import ScoringSettings
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, isolated_settings, produce_envelopes, read_topic
from qastream_shared.topics import REVIEWS, SAMPLES, ensure_topics, physical
from tests.integration.conftest import Proc
from tests.integration.test_scoring import sampled, star

TENANT = "bench"
TARGET_PER_S = 800
POLL_S = 0.01
STORED_POLL_S = 0.1
WITHIN_S = 150


def conversations(n: int) -> list[Conversation]:
    """n conversations cycling through STAR, each under its own id so every one is scored and stored."""
    base = star(n)
    return [
        c.model_copy(update={"conversation_id": f"{c.conversation_id}-{i}"})
        for i, c in zip(range(n), itertools.cycle(base))
    ]


def cold_text_caches() -> None:
    """Empties the per-text caches (VADER and its verdicts, cue matches, spelling, word runs and token sets,
    phrase checks) so that each in-process pass starts as a fresh service process does: else the pass without
    pCSAT warms them for the pass with it."""
    for cached in (compound, empathic, misspelled, token_set, word_runs, *(cue.matches for cue in CUES)):
        cached.cache_clear()
    clear_verdicts()
    forget_occurrences()


def pure_rate(convs: list[Conversation], pcsat: bool) -> dict[str, Any]:
    """AutoQA in this process as the service runs it (one view per conversation), with or without pCSAT."""
    cold_text_caches()
    card, settings = prepare(default_scorecard()), ScoringSettings()
    runner = AutoQARunner(DEFAULT_REGISTRY, pcsat=pcsat_model() if pcsat else None)
    for c in convs[:50]:
        runner.review(c, card, settings)  # warm-up: lazy lexicons
    clock, cpu = Stopwatch(), time.process_time()
    for c in convs:
        runner.review(c, card, settings)
    clock.stop()
    cpu_ms = 1000 * (time.process_time() - cpu) / len(convs)
    return rate(len(convs), clock.seconds, cpu_ms_per_conversation=round(cpu_ms, 3))


async def topic_size(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> int:
    return sum((await consumer.end_offsets(tps)).values())


async def service_rate(
    settings: Settings, n: int, profile: str | None, pcsat: bool
) -> tuple[dict[str, Any], int]:
    """Runs the scoring process until n reviews are stored and published; returns the rate and its pid."""
    runtime = ServiceRuntime(SPEC, settings)
    offsets = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await offsets.start()
    env = {"QA_HTTP_PORT": str(free_port()), "QA_PCSAT_ENABLED": str(pcsat).lower()}
    proc = Proc(["-m", "qastream_scoring"], settings, env)
    spy = None
    try:
        reviews_topic = physical(REVIEWS, settings)
        tps = [TopicPartition(reviews_topic, p) for p in range(PARTITIONS)]

        async def stored() -> int:
            try:
                async with runtime.sessions() as s:
                    return int((await s.execute(select(func.count()).select_from(reviews))).scalar_one())
            except Exception:  # the process has not migrated its schema yet
                return 0

        deadline = time.monotonic() + WITHIN_S
        while (first := await stored()) == 0:
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"scoring produced no review:\n{proc.output()}")
            await asyncio.sleep(POLL_S)
        clock = Stopwatch()
        cpu = psutil.Process(proc.popen.pid)
        cpu_before = cpu.cpu_times()
        if profile:
            spy = await asyncio.create_subprocess_exec(
                *["py-spy", "record", "-d", "15", "-p", str(proc.popen.pid), "-o", profile],
                *["--format", "speedscope"],
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        # While timed, the table is counted every STORED_POLL_S only: a count(*) every 10 ms was PostgreSQL
        # work on the same two cores as the process measured, growing with the table. The clock stops on the
        # topic's end offsets, which the broker answers without scanning anything.
        db_seconds: float | None = None
        next_count = 0.0
        while await topic_size(offsets, tps) < n:
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"scoring stopped short of {n} published reviews:\n{proc.output()}")
            if db_seconds is None and time.monotonic() >= next_count:
                next_count = time.monotonic() + STORED_POLL_S
                if await stored() >= n:
                    db_seconds = time.perf_counter() - clock.started
            await asyncio.sleep(POLL_S)
        clock.stop()
        # Every review published was stored first (its outbox row commits with it).
        if db_seconds is None:
            db_seconds = clock.seconds
        cpu_after = cpu.cpu_times()
        cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
        counted = n - first
        result = rate(
            counted,
            clock.seconds,
            skipped_at_first_sight=first,
            stored_per_s=round(counted / db_seconds, 1),
            # CPU seconds of the scoring process over the timed span / wall seconds: near 1 means it was
            # bound by its own Python, well under 1 that it waited (database, broker, or a busy machine).
            cpu_utilisation=round(cpu_s / clock.seconds, 2),
            cpu_ms_per_conversation=round(1000 * cpu_s / counted, 3),
            batch=BATCH,
            target=TARGET_PER_S,
            met=counted / clock.seconds >= TARGET_PER_S,
        )
        if spy is not None:
            await spy.wait()
        return result, proc.popen.pid
    finally:
        proc.stop()
        await offsets.stop()
        await runtime.engine.dispose()


async def check_published(settings: Settings, n: int) -> None:
    """Untimed: exactly one ReviewSubmitted per sampled conversation, no duplicate, no loss."""
    records = await read_topic(settings, physical(REVIEWS, settings), expect=n, within=60)
    keys = {r.key for r in records}
    if len(records) != n or len(keys) != n:
        raise RuntimeError(f"{len(records)} records for {len(keys)} conversations on qa.reviews, want {n}")


async def run(
    db: str, kafka: str, convs: list[Conversation], profile: str | None, pcsat: bool
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """One scoring process over its own topics and schema: (raw consume, service rate, pid)."""
    settings = isolated_settings(db, kafka)
    n = len(convs)
    try:
        await ensure_topics(settings)  # qa.samples and qa.reviews: PARTITIONS each
        await add_tenant(settings, TENANT)
        await produce_envelopes(settings, physical(SAMPLES, settings), [sampled(TENANT, c) for c in convs])
        consumed = await raw_consume(settings, physical(SAMPLES, settings), n)
        service, pid = await service_rate(settings, n, profile, pcsat)
        await check_published(settings, n)
    finally:
        await cleanup(ServiceRuntime(SPEC, settings), settings)
    return consumed, service, pid


async def one_round(
    db: str, kafka: str, convs: list[Conversation], pure_n: int | None, profile: str | None, with_first: bool
) -> dict[str, Any]:
    """The same conversations without and with pCSAT, in-process and through fresh service processes."""
    order = (True, False) if with_first else (False, True)
    pure = {pcsat: pure_rate(convs[:pure_n], pcsat=pcsat) for pcsat in order}
    runs = {pcsat: await run(db, kafka, convs, profile if pcsat else None, pcsat=pcsat) for pcsat in order}
    (consumed_off, service_off, _), (consumed, service, pid) = runs[False], runs[True]
    pure_off = pure[False]
    return {
        "kafka": kafka,
        "conversations": len(convs),
        "raw_consume": consumed,
        "score_conversation": pure[True],
        "service": service,
        "service_over_raw_consume": round(service["per_s"] / consumed["per_s"], 3),
        "service_over_score_conversation": round(service["per_s"] / pure[True]["per_s"], 3),
        # pCSAT's cost, measured in this run: the same conversations scored without it.
        "without_pcsat": {
            "raw_consume": consumed_off,
            "score_conversation": pure_off,
            "service": service_off,
            "score_conversation_with_over_without": round(pure[True]["per_s"] / pure_off["per_s"], 3),
            "score_conversation_cpu_without_over_with": round(
                pure_off["cpu_ms_per_conversation"] / pure[True]["cpu_ms_per_conversation"], 3
            ),
            "service_with_over_without": ratio(service["per_s"], service_off["per_s"], 0.9),
            # The same in CPU per conversation: what the rate would be on a core of its own, so less at the
            # mercy of how much of a busy machine each process happened to get.
            "service_cpu_without_over_with": round(
                service_off["cpu_ms_per_conversation"] / service["cpu_ms_per_conversation"], 3
            ),
        },
        **({"profile": profile, "pid": pid} if profile else {}),
    }


ROUND_RATIOS = (
    "service_with_over_without",
    "service_cpu_without_over_with",
    "score_conversation_cpu_without_over_with",
)


def round_ratios(result: dict[str, Any]) -> dict[str, float]:
    cost = result["without_pcsat"]
    return {k: cost[k]["value"] if isinstance(cost[k], dict) else cost[k] for k in ROUND_RATIOS}


async def main(n: int, pure_n: int | None, profile: str | None, rounds: int) -> dict[str, Any]:
    db, kafka = servers()
    convs = conversations(n)
    # Rounds alternate which goes first (without pCSAT in the first), so a machine getting busier or
    # quieter over the run does not favour one side; the first round is reported in full.
    results = [
        await one_round(db, kafka, convs, pure_n, profile if i == 0 else None, with_first=i % 2 == 1)
        for i in range(rounds)
    ]
    out = results[0]
    if rounds > 1:
        each = [round_ratios(r) for r in results]
        out["rounds"] = each
        median = {k: round(statistics.median(r[k] for r in each), 3) for k in ROUND_RATIOS}
        out["median"] = {**median, "target": 0.9, "met": median["service_with_over_without"] >= 0.9}
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--pure", type=int, default=None, help="conversations scored in-process (all)")
    parser.add_argument("--profile", help="write a py-spy speedscope profile of the scoring process here")
    parser.add_argument(
        "--rounds", type=int, default=1, help="pairs without/with pCSAT, reported with medians"
    )
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    if args.tiny:
        # More than one batch of 500 (the first is not timed); two rounds, so the medians are smoke-run too.
        args.messages, args.pure, args.rounds = 1_100, 20, 2
    emit(asyncio.run(main(args.messages, args.pure, args.profile, args.rounds)))
