"""The sampler against the real broker and database: replay determinism across replicas, late CSAT exactly
once, bad input to the DLQ, tenant isolation, and `qa samples explain`."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from qastream_sampler.decisions import Decision, decision_event_id
from qastream_sampler.snapshot_store import recorded
from qastream_sampler.store import SamplerStore
from qastream_sampler.tables import sample_log
from qastream_shared.cli import app as qa
from qastream_shared.conversation import Conversation
from qastream_shared.events import (
    ConversationIngested,
    ConversationSampled,
    ConversationUpdated,
    CsatRecorded,
    Envelope,
    Purpose,
    Rating,
    ReviewKind,
    ReviewSubmitted,
    conversation_key,
    decode,
)
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, eventually, produce_envelopes, read_topic
from qastream_shared.topics import CONVERSATIONS, REGISTRY, REVIEWS, SAMPLES, dlq, ensure_topics, physical
from tests.integration.sampler_setup import install_plans

pytestmark = pytest.mark.integration
T0 = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
CHANNELS = ("chat", "email", "voice")

# One plan of each kind. Review-fed and conversation-fed rules sit in separate plans: the two topics
# interleave differently in every run, and a plan records the first of its rules that fired.
PLANS: list[dict[str, Any]] = [
    {"plan_id": "random5", "kind": "random", "rate": 0.05, "priority": 10},
    {"plan_id": "weekly", "kind": "stratified", "by": "agent", "quota": 3, "period": "week", "priority": 20},
    {
        "plan_id": "unhappy",
        "kind": "targeted",
        "rules": [{"kind": "csat_at_most", "max": 2}, {"kind": "escalated"}],
        "priority": 30,
    },
    {
        "plan_id": "low-auto",
        "kind": "targeted",
        "rules": [{"kind": "auto_score_below", "threshold": 0.5}],
        "priority": 40,
    },
]


def conv(cid: str, ended_at: datetime, agent: str, channel: str = "chat", **extra: Any) -> Conversation:
    start = ended_at - timedelta(minutes=12)
    return Conversation.model_validate(
        {
            "conversation_id": cid,
            "channel": channel,
            "agent_ids": [agent],
            "team": f"team-{int(agent[1:]) % 4}",
            "started_at": start,
            "ended_at": ended_at,
            "turns": [
                {"role": "customer", "text": "My parcel has not arrived", "ts": start},
                {"role": "agent", "text": "Sorry to hear that, let me check the tracking", "ts": ended_at},
            ],
            **extra,
        }
    )


def env(tenant: str, cid: str, data: Any) -> Envelope:
    return Envelope(data=data, source="ingest", tenant=tenant, key=conversation_key(tenant, cid), subject=cid)


def auto_review(tenant: str, cid: str, at: datetime, score: float, failed: bool) -> Envelope:
    return Envelope(
        data=ReviewSubmitted(
            review_id=f"r-{cid}",
            conversation_id=cid,
            kind=ReviewKind.auto,
            scorecard_id="customer-service",
            scorecard_version=1,
            ratings=[Rating(category_id="greeting", value=1, score=score)],
            score=0.0 if failed else score,
            auto_failed=failed,
            submitted_at=at,
        ),
        source="scoring",
        tenant=tenant,
        key=conversation_key(tenant, cid),
        subject=cid,
    )


def stream(
    tenant: str, n: int, *, agents: int = 30, weeks: int = 6, seed: int = 7
) -> tuple[list[Envelope], list[Envelope]]:
    """(qa.conversations, qa.reviews): `n` conversations in event-time order with up to 20 min of disorder,
    CSAT (some <= 2) and escalations hours later, auto reviews for a third of them minutes later."""
    rng = random.Random(seed)
    span = timedelta(weeks=weeks).total_seconds()
    timed: list[tuple[datetime, Envelope]] = []
    reviews: list[tuple[datetime, Envelope]] = []
    for i in range(n):
        ended = T0 + timedelta(seconds=rng.random() * span)
        cid = f"c{i:06d}"
        c = conv(cid, ended, f"a{rng.randrange(agents):02d}", CHANNELS[i % 3])
        arrived = ended + timedelta(minutes=rng.random() * 20)
        timed.append((arrived, env(tenant, cid, ConversationIngested(conversation=c, ingested_at=arrived))))
        if rng.random() < 0.1:
            at = arrived + timedelta(minutes=1) + timedelta(hours=rng.random() * 48)
            score = rng.choice([1, 2, 3, 4, 5])
            timed.append(
                (at, env(tenant, cid, CsatRecorded(conversation_id=cid, csat=score, recorded_at=at)))
            )
        if rng.random() < 0.03:
            at = arrived + timedelta(hours=1 + rng.random() * 24)
            upd = ConversationUpdated(conversation_id=cid, escalated=True, occurred_at=at)
            timed.append((at, env(tenant, cid, upd)))
        if rng.random() < 0.33:
            at = ended + timedelta(minutes=1 + rng.random() * 10)
            reviews.append((at, auto_review(tenant, cid, at, round(rng.random(), 3), rng.random() < 0.05)))
    timed.sort(key=lambda p: p[0])
    reviews.sort(key=lambda p: p[0])
    return [e for _, e in timed], [e for _, e in reviews]


async def count(runtime: ServiceRuntime, table: Any) -> int:
    async with runtime.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(table))).scalar_one())


async def recorded_inputs(runtime: ServiceRuntime) -> int:
    """Inputs the sampler has recorded, stored or compacted away by a snapshot: how far it has consumed."""
    async with runtime.sessions() as s:
        return await recorded(s)


async def canonical_log(runtime: ServiceRuntime) -> bytes:
    """The whole sample log, every column (decided_at is an event time), sorted: equal runs give equal bytes."""
    async with runtime.sessions() as s:
        rows = (await s.execute(select(sample_log).order_by(*sample_log.primary_key.columns))).all()
        return b"\n".join(
            orjson.dumps(r._asdict(), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS) for r in rows
        )


async def run_to_completion(
    runtime: ServiceRuntime, spawn: Any, replicas: int, n_inputs: int
) -> tuple[bytes, list[Any]]:
    procs = [
        spawn(["-m", "qastream_sampler"], {"QA_HTTP_PORT": str(free_port())}, s=runtime.settings)
        for _ in range(replicas)
    ]

    async def consumed() -> bool:
        return await recorded_inputs(runtime) == n_inputs

    await eventually(consumed, within=240, every=0.2)  # includes the processes' start: slow under load
    # Every input is stored, but replicas may still be closing slots from what the others stored. The log
    # is complete once it holds every decision the engine derives from all stored inputs.
    due = len({(tenant, decision_event_id(tenant, d)) for tenant, d in await derived(runtime)})

    async def settled() -> bool:
        return await count(runtime, sample_log) >= due

    await eventually(settled, within=60, every=0.2)
    assert await count(runtime, sample_log) == due
    return await canonical_log(runtime), procs


async def derived(runtime: ServiceRuntime) -> list[tuple[str, Decision]]:
    """What a fresh replica derives from every stored input: the decisions the sample log must end with."""
    partitions = next(t.partitions for t in REGISTRY if t.name == CONVERSATIONS)
    async with runtime.sessions() as s:
        return await SamplerStore(runtime.settings, partitions).rebuild(s)


async def test_replay_into_fresh_schemas_gives_identical_sample_logs(settings: Settings, spawn: Any) -> None:
    await ensure_topics(settings)
    await add_tenant(settings, "acme")
    convs, reviews = stream("acme", 3000)
    await produce_envelopes(settings, physical(CONVERSATIONS, settings), convs)
    await produce_envelopes(settings, physical(REVIEWS, settings), reviews)
    n_inputs = len(convs) + len(reviews)

    a = await install_plans(settings, "acme", PLANS)
    log_a, procs_a = await run_to_completion(a, spawn, 1, n_inputs)
    for p in procs_a:
        p.stop()
    rows = [orjson.loads(line) for line in log_a.split(b"\n")]
    by_plan = Counter(r["plan_id"] for r in rows)
    quota_weeks = {r["stratum"].split("|")[1] for r in rows if r["plan_id"] == "weekly"}
    # Not vacuous: every kind of plan picked something, and weekly quota slots closed for most weeks.
    assert by_plan["auto-policy"] == 3000
    assert all(by_plan[p["plan_id"]] > 0 for p in PLANS), by_plan
    assert len(quota_weeks) >= 4, quota_weeks
    assert {r["rule"] for r in rows if r["plan_id"] == "unhappy"} == {"csat<=2", "escalated"}

    # Each decision was published once, with the log's id.
    records = await read_topic(settings, physical(SAMPLES, settings), expect=len(rows), within=60)
    ids = Counter(decode(r.key, r.value, r.headers).id for r in records)
    assert ids == Counter(r["event_id"] for r in rows)

    b = await install_plans(
        settings.model_copy(update={"db_schema": f"{settings.db_schema}_b"}), "acme", PLANS
    )
    log_b, _ = await run_to_completion(b, spawn, 3, n_inputs)
    assert log_b == log_a
    for rt in (a, b):
        await rt.engine.dispose()


async def sampler(settings: Settings, spawn: Any) -> httpx.AsyncClient:
    port = free_port()
    spawn(["-m", "qastream_sampler"], {"QA_HTTP_PORT": str(port)})
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)

    async def ready() -> bool:
        try:
            r = await http.get("/readyz")
        except httpx.TransportError:
            return False
        return r.status_code == 200 and "joining" not in r.text

    await eventually(ready, within=180)
    return http


async def test_late_csat_samples_once_and_explain_cli(
    settings: Settings, spawn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ensure_topics(settings)
    key = await add_tenant(settings, "acme")
    runtime = await install_plans(settings, "acme", PLANS)
    http = await sampler(settings, spawn)
    topic = physical(CONVERSATIONS, settings)
    ended = datetime(2025, 3, 4, 10, tzinfo=UTC)
    await produce_envelopes(
        settings,
        topic,
        [
            env(
                "acme",
                "late",
                ConversationIngested(conversation=conv("late", ended, "a01"), ingested_at=ended),
            )
        ],
    )

    async def stored(n: int) -> bool:
        return await recorded_inputs(runtime) == n

    await eventually(lambda: stored(1))
    csat = CsatRecorded(conversation_id="late", csat=1, recorded_at=ended + timedelta(days=2))
    first = env("acme", "late", csat)
    again = env("acme", "late", csat.model_copy(update={"recorded_at": ended + timedelta(days=3)}))
    await produce_envelopes(
        settings, topic, [first, again, first]
    )  # `first` twice: the same ce_id redelivered
    await eventually(lambda: stored(3))  # the redelivery is dropped by the inbox, the second CSAT is stored

    async with runtime.sessions() as s:
        manual = (
            (await s.execute(select(sample_log).where(sample_log.c.purpose == Purpose.manual.value)))
            .mappings()
            .all()
        )
    assert [(r["conversation_id"], r["plan_id"], r["rule"]) for r in manual] == [
        ("late", "unhappy", "csat<=2")
    ]
    assert manual[0]["decided_at"] == ended + timedelta(days=2)  # the first CSAT's time, not the wall clock
    records = await read_topic(settings, physical(SAMPLES, settings), expect=2)
    events = [
        e for r in records if isinstance(e := decode(r.key, r.value, r.headers).data, ConversationSampled)
    ]
    assert len(events) == len(records)
    assert sorted((e.purpose.value, e.plan_id) for e in events) == [
        ("auto", "auto-policy"),
        ("manual", "unhappy"),
    ]

    # The API and the CLI explain the same verdicts.
    explained = (
        await http.get("/v1/samples/explain/late", headers={"Authorization": f"Bearer {key}"})
    ).json()
    assert [(v["plan_id"], v["picked"]) for v in explained] == [
        ("auto-policy", True),
        ("random5", False),
        ("weekly", False),
        ("unhappy", True),
        ("low-auto", False),
    ]
    await http.aclose()
    for name, value in (
        ("DATABASE_URL", settings.database_url),
        ("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers),
        ("QA_TOPIC_PREFIX", settings.topic_prefix),
        ("QA_DB_SCHEMA", settings.db_schema or ""),
        ("COLUMNS", "200"),
    ):
        monkeypatch.setenv(name, value)
    runner = CliRunner()  # `qa`, with the sampler's commands registered through its entry point
    # In a thread: the command runs its own event loop.
    result = await asyncio.to_thread(runner.invoke, qa, ["samples", "explain", "late", "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 6}
    assert set(lines) == {"auto-policy", "random5", "weekly", "unhappy", "low-auto"}
    assert "yes" in lines["unhappy"] and "late csat=1: rule csat<=2 matched" in lines["unhappy"]
    assert "no" in lines["random5"] and "random: hash" in lines["random5"]
    result = await asyncio.to_thread(runner.invoke, qa, ["samples", "explain", "late", "--tenant", "other"])
    assert result.exit_code == 1 and "no conversation 'late'" in result.output
    await runtime.engine.dispose()


async def test_bad_input_is_rejected_or_dead_lettered_and_tenants_are_isolated(
    settings: Settings, spawn: Any
) -> None:
    await ensure_topics(settings)
    key_a = await add_tenant(settings, "alpha")
    key_b = await add_tenant(settings, "beta")
    http = await sampler(settings, spawn)
    a = {"Authorization": f"Bearer {key_a}"}
    b = {"Authorization": f"Bearer {key_b}"}

    async def keys_known() -> bool:
        # Ready is not the same as having read both keys from qa.tenants: await them, or the checks below
        # would see a 401 instead of the answer they test.
        statuses = [(await http.get("/v1/samples", headers=h)).status_code for h in (a, b)]
        return 401 not in statuses

    await eventually(keys_known, within=120, every=0.2)

    invalid = [
        ({"plan_id": "r", "kind": "random", "rate": 1.5}, "rate"),
        ({"plan_id": "s", "kind": "stratified", "quota": -1}, "quota"),
        ({"plan_id": "t", "kind": "targeted", "rules": [{"kind": "escalated", "when": "now"}]}, "when"),
    ]
    for body, named in invalid:
        r = await http.post("/v1/plans", json=body, headers=a)
        assert r.status_code == 422 and named in r.json()["detail"], (body, r.text)
    r = await http.post(
        "/v1/plans", json={"plan_id": "p1", "kind": "random", "rate": 0.1, "priority": 5}, headers=a
    )
    assert r.status_code == 201, r.text
    r = await http.post(
        "/v1/plans", json={"plan_id": "p2", "kind": "random", "rate": 0.2, "priority": 5}, headers=a
    )
    assert r.status_code == 422 and "'p1' and 'p2' overlap" in r.json()["detail"], r.text

    # Bad events: an unknown tenant, then CSAT for a conversation never ingested. Each shares its partition
    # with a good conversation produced after it, which must still be sampled.
    ended = datetime(2025, 3, 4, 10, tzinfo=UTC)
    ghost = Envelope(
        data=ConversationIngested(conversation=conv("g1", ended, "a01"), ingested_at=ended),
        source="ingest",
        tenant="ghost",
        key=conversation_key("alpha", "after-ghost"),
    )
    orphan = env("alpha", "orphan", CsatRecorded(conversation_id="orphan", csat=1, recorded_at=ended))
    good = [
        env("alpha", cid, ConversationIngested(conversation=conv(cid, ended, "a01"), ingested_at=ended))
        for cid in ("after-ghost", "orphan")
    ]
    await produce_envelopes(settings, physical(CONVERSATIONS, settings), [ghost, orphan, *good])
    dead = await read_topic(settings, physical(dlq("sampler"), settings), expect=2)
    reasons = {decode(r.key, r.value, r.headers).id: dict(r.headers)["dlq_reason"].decode() for r in dead}
    assert reasons == {
        ghost.id: "unknown tenant 'ghost'",
        orphan.id: "missing conversation 'orphan': qa.csat.recorded.v1 for a conversation never ingested",
    }

    async def sampled_after() -> bool:
        r = await http.get("/v1/samples", params={"purpose": "auto"}, headers=a)
        return sorted(s["conversation_id"] for s in r.json()) == ["after-ghost", "orphan"]

    await eventually(sampled_after)

    # Tenant isolation: beta sees none of alpha's plans, samples or conversations, and cannot edit its plans.
    assert (await http.get("/v1/plans", headers=b)).json() == []
    assert [p["plan_id"] for p in (await http.get("/v1/plans", headers=a)).json()] == ["p1"]
    assert (await http.get("/v1/samples", headers=b)).json() == []
    assert (await http.get("/v1/samples", params={"conversation_id": "orphan"}, headers=b)).json() == []
    assert (await http.get("/v1/samples/explain/orphan", headers=b)).status_code == 404
    assert (await http.get("/v1/samples/explain/orphan", headers=a)).status_code == 200
    assert (await http.put("/v1/plans/p1", json={"rate": 0.9}, headers=b)).status_code == 404
    assert (await http.post("/v1/plans/p1/pause", headers=b)).status_code == 404
    assert (await http.get("/v1/plans", headers=a)).json()[0]["rate"] == 0.1
    await http.aclose()
