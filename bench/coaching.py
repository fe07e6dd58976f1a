"""Coaching: rule evaluation throughput with 50 rules per tenant, next to raw consume; p99 review → task.

    uv run python -m bench.coaching [--reviews 20000] [--latency 300] [--tiny]

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when both are set, else starts (or reuses) the launcher's
local stack. Everything runs in a fresh topic prefix and schema, dropped at the end. Untimed set-up: a
tenant on qa.tenants, 50 rules (every trigger, several parameters), and `--reviews` ReviewSubmitted on
qa.reviews: 400 agents, 10 categories, scores drawn from a seeded generator, event times spread over 60 days
(about a fifth of the reviews fire some rule). Prints JSON:
- raw_consume: aiokafka getmany() over those qa.reviews records, no processing;
- evaluate_pure: the rule evaluation alone (triggers.evaluate_review with each agent's history) in this
  process, over the same reviews: the ceiling of the Python part;
- service: one `python -m qastream_coaching` process consuming them; timed from the first review row
  stored to the last one (rows already there at first sight are not counted), with the tasks it opened;
- service_over_raw_consume: the share of raw consume the service reaches. Target >= 5,000 reviews/s.
- latency: with the service caught up, `--latency` failing reviews of fresh agents published one every
  20 ms; for each, from just before the send to its task first seen stored (read by id every 5 ms).
  Target p99 <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from bench.common import Stopwatch, emit, rate
from bench.platform import cleanup, raw_consume, servers
from qastream_coaching import rule_store
from qastream_coaching.app import SPEC
from qastream_coaching.rules import Rule, Trigger
from qastream_coaching.service import review_in
from qastream_coaching.tables import reviews, tasks
from qastream_coaching.task_updates import slot_of, task_id_of
from qastream_coaching.triggers import AgentHistory, RuleSet, evaluate_review
from qastream_shared.events import Envelope, Rating, ReviewKind, ReviewSubmitted, conversation_key, encode
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, isolated_settings, produce_envelopes
from qastream_shared.topics import REVIEWS, ensure_topics, physical
from tests.integration.conftest import Proc

TENANT = "bench"
CATEGORIES = [f"cat-{i}" for i in range(10)]
AGENTS = 400
TARGET_PER_S = 5000
TARGET_P99_S = 1.0
POLL_S = 0.05  # counting stored rows is a scan: often enough to time a run of seconds, not more
WITHIN_S = 300
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fifty_rules() -> list[Rule]:
    rules = [
        Rule(rule_id="below", trigger=Trigger.below_pass_mark, title="below"),
        Rule(
            rule_id="below-60", trigger=Trigger.below_pass_mark, pass_mark=0.6, title="below 60", alert=True
        ),
        Rule(rule_id="auto-fail", trigger=Trigger.auto_fail, title="auto-fail", alert=True),
        Rule(rule_id="kudos", trigger=Trigger.kudos, title="kudos"),
        Rule(rule_id="iqs-10", trigger=Trigger.iqs_drop, drop_points=10, title="iqs"),
        Rule(rule_id="iqs-20", trigger=Trigger.iqs_drop, drop_points=20, min_reviews=5, title="iqs"),
        Rule(rule_id="disputes", trigger=Trigger.dispute_rejections, title="disputes"),
    ]
    for cat in CATEGORIES:
        for k, days in ((3, 7), (5, 30), (2, 2)):
            rules.append(
                Rule(
                    rule_id=f"fail-{cat}-{k}",
                    trigger=Trigger.category_failures,
                    category_id=cat,
                    k=k,
                    window_days=days,
                    title=cat,
                )
            )
        rules.append(
            Rule(
                rule_id=f"any-{cat}",
                trigger=Trigger.category_failures,
                category_id=cat,
                k=4,
                fail_below=0.6,
                title=cat,
            )
        )
        if len(rules) >= 50:
            break
    while len(rules) < 50:
        rules.append(
            Rule(
                rule_id=f"any-fail-{len(rules)}",
                trigger=Trigger.category_failures,
                k=4,
                window_days=14,
                title="x",
            )
        )
    return rules[:50]


def review_events(n: int, seed: int = 7) -> list[Envelope]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        agent = f"agent-{rng.randrange(AGENTS)}"
        cats = {c: rng.choices((0.0, 0.5, 0.75, 1.0), (3, 7, 30, 60))[0] for c in rng.sample(CATEGORIES, 5)}
        score = sum(cats.values()) / len(cats)
        data = ReviewSubmitted(
            review_id=f"r{i}",
            conversation_id=f"c{i}",
            kind=ReviewKind.auto,
            scorecard_id="bench",
            scorecard_version=1,
            agent_id=agent,
            team=f"team-{agent[-1]}",
            ratings=[Rating(category_id=c, value=int(s * 4), score=s) for c, s in cats.items()],
            score=score,
            auto_failed=rng.random() < 0.01,
            passed=score >= 0.8,
            submitted_at=T0 + timedelta(seconds=i * 60 * 24 * 60 * 60 / max(n, 1) / 60),
        )
        out.append(
            Envelope(
                data=data, source="scoring", tenant=TENANT, key=conversation_key(TENANT, data.conversation_id)
            )
        )
    return out


def data_of(env: Envelope) -> ReviewSubmitted:
    assert isinstance(env.data, ReviewSubmitted)
    return env.data


def evaluate_pure(envs: list[Envelope], rules: list[Rule]) -> dict[str, Any]:
    """The Python of rule evaluation alone: each review against its agent's history so far."""
    facts = [got.fact for e in envs if (got := review_in(data_of(e), data_of(e).submitted_at)) is not None]
    by_agent: dict[str, list[Any]] = {}
    clock = Stopwatch()
    rule_set = RuleSet.of(rules)
    fired = 0
    for f in facts:
        history = by_agent.setdefault(f.agent_id, [])
        history.append(f)
        fired += bool(evaluate_review(f, AgentHistory.of(history[-200:]), rule_set))
    clock.stop()
    return rate(len(facts), clock.seconds, reviews_firing=fired)


async def service_rate(settings: Settings, runtime: ServiceRuntime, n: int, proc: Proc) -> dict[str, Any]:
    async def stored() -> int:
        try:
            async with runtime.sessions() as s:
                return int((await s.execute(select(func.count()).select_from(reviews))).scalar_one())
        except Exception:  # not migrated yet
            return 0

    deadline = time.monotonic() + WITHIN_S
    while (first := await stored()) == 0:
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"coaching stored no review:\n{proc.output()}")
        await asyncio.sleep(POLL_S)
    clock = Stopwatch()
    cpu = psutil.Process(proc.popen.pid)
    cpu_before = cpu.cpu_times()
    while await stored() < n:
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"coaching stopped short of {n} reviews:\n{proc.output()}")
        await asyncio.sleep(POLL_S)
    clock.stop()
    cpu_after = cpu.cpu_times()
    cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    async with runtime.sessions() as s:
        opened = int((await s.execute(select(func.count()).select_from(tasks))).scalar_one())
    counted = n - first
    return rate(
        counted,
        clock.seconds,
        skipped_at_first_sight=first,
        tasks_opened=opened,
        # CPU seconds of the coaching process over the timed span / wall seconds: near 1 means bound by its
        # own Python, well under 1 that it waited (database, broker, or a busy machine).
        cpu_utilisation=round(cpu_s / clock.seconds, 2),
        cpu_ms_per_review=round(1000 * cpu_s / max(1, n - first), 3),
        target=TARGET_PER_S,
        met=counted / clock.seconds >= TARGET_PER_S,
    )


async def latency(settings: Settings, runtime: ServiceRuntime, m: int) -> dict[str, Any]:
    """Review published → its task stored, for m failing reviews of fresh agents, one every 20 ms."""
    now = datetime.now(UTC)
    envs = []
    for i in range(m):
        data = ReviewSubmitted(
            review_id=f"lat-{i}",
            conversation_id=f"lat-c{i}",
            kind=ReviewKind.auto,
            scorecard_id="bench",
            scorecard_version=1,
            agent_id=f"lat-agent-{i}",
            team="team-lat",
            ratings=[Rating(category_id="cat-0", value=0, score=0.0)],
            score=0.2,
            passed=False,
            submitted_at=now + timedelta(seconds=i),
        )
        envs.append(
            Envelope(
                data=data, source="scoring", tenant=TENANT, key=conversation_key(TENANT, data.conversation_id)
            )
        )
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=0)
    await producer.start()
    done = asyncio.Event()

    # Each fresh agent's first task has a known id (task_updates.task_id_of), so the watcher reads tasks by primary
    # key instead of scanning a table while the service writes it.
    below = fifty_rules()[0]
    task_of = {task_id_of(TENANT, slot_of(f"lat-agent-{i}", "cat-0", below), 0): f"lat-{i}" for i in range(m)}

    async def watch() -> None:
        while len(seen) < m:
            async with runtime.sessions() as s:
                waiting = [t for t, r in task_of.items() if r in sent and r not in seen]
                rows = await s.execute(select(tasks.c.task_id).where(tasks.c.task_id.in_(waiting)))
                t = time.perf_counter()
                for (tid,) in rows:
                    seen.setdefault(task_of[tid], t)
            await asyncio.sleep(0.005)
        done.set()

    watcher = asyncio.create_task(watch())
    try:
        topic = physical(REVIEWS, settings)
        for env in envs:
            key, value, headers = encode(env)
            sent[data_of(env).review_id] = time.perf_counter()
            await producer.send(topic, value=value, key=key, headers=headers)
            await asyncio.sleep(0.02)
        await asyncio.wait_for(done.wait(), 120)
    finally:
        watcher.cancel()
        await producer.stop()
    lat = sorted(seen[r] - sent[r] for r in sent)

    def q(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 4)

    return {
        "reviews": m,
        "p50_s": q(0.5),
        "p99_s": q(0.99),
        "max_s": round(lat[-1], 4),
        "target_p99_s": TARGET_P99_S,
        "met": q(0.99) <= TARGET_P99_S,
    }


async def main(n: int, m: int) -> dict[str, Any]:
    db, kafka = servers()
    settings = isolated_settings(db, kafka)
    runtime = ServiceRuntime(SPEC, settings)
    rules = fifty_rules()
    try:
        await ensure_topics(settings)
        await add_tenant(settings, TENANT)
        await migrate(settings, runtime.schema, SPEC.migrations)
        async with runtime.unit_of_work() as uow:
            for rule in rules:
                await rule_store.save_rule(uow.session, TENANT, rule)
        envs = review_events(n)
        await produce_envelopes(settings, physical(REVIEWS, settings), envs)
        consumed = await raw_consume(settings, physical(REVIEWS, settings), n)
        pure = evaluate_pure(envs, rules)
        # Smaller batches than the size: the rate is timed from the first batch stored to the last.
        batch = str(min(SPEC.consumer_batch_size or 500, max(10, n // 10)))  # its default from 20,000 up
        proc = Proc(
            ["-m", "qastream_coaching"],
            settings,
            {"QA_HTTP_PORT": str(free_port()), "QA_CONSUMER_BATCH_SIZE": batch},
        )
        try:
            service = await service_rate(settings, runtime, n, proc)
            lat = await latency(settings, runtime, m)
        finally:
            proc.stop()
    finally:
        await cleanup(runtime, settings)
    return {
        "kafka": kafka,
        "reviews": n,
        "rules_per_tenant": len(rules),
        "raw_consume": consumed,
        "evaluate_pure": pure,
        "service": service,
        "service_over_raw_consume": round(service["per_s"] / consumed["per_s"], 3),
        "service_over_evaluate_pure": round(service["per_s"] / pure["per_s"], 3),
        "latency": lat,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reviews", type=int, default=20_000)
    parser.add_argument("--latency", type=int, default=300, help="failing reviews timed end to end")
    parser.add_argument("--tiny", action="store_true", help="CI smoke size: 200 reviews, 5 timed")
    args = parser.parse_args()
    n, m = (200, 5) if args.tiny else (args.reviews, args.latency)
    emit(asyncio.run(main(n, m)))
