"""Reporting: projection throughput beside raw consume, and metrics query latency over a large tenant.

    uv run python -m bench.reporting [--events 20000] [--reviews 1000000] [--queries 40]
    uv run python -m bench.reporting --tiny        # CI smoke: 1,000 events, 2,000 reviews, 3 queries

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when both are set, else starts (or reuses) the launcher's local
stack. Everything runs in a fresh topic prefix and schema, dropped at the end. Prints JSON:
- raw_consume: aiokafka getmany() over the `--events` ReviewSubmitted records on qa.reviews, no processing;
- projection: one `python -m qastream_reporting` process projecting them (AutoQA reviews, ten categories,
  two thirds with a predicted CSAT), timed from the first inbox row seen to all of them; the rows already
  there at first sight are not counted. Target >= 5,000 review events/s; projection_over_raw_consume is
  the share of raw consume it reaches.
- queries: a second tenant loaded with `--reviews` reviews (the reviews table bulk-seeded with SQL, the
  rollups written by the projection's own contribution code over the same synthetic facts: 90 days, 10
  teams of 10 agents, 3 channels, 10% re-scored under version 2, 5% reviewed by people, CSAT on 20%), then
  p50/p95 of each metrics endpoint over the whole range through HTTP (auth included), `--queries` calls
  each after one warm-up. Beside them, in the same run: GET /healthz (the HTTP floor) and a naive mean over
  the reviews table (what a query without rollups would scan). Target: p95 <= 100 ms per query.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, text

from bench.common import Stopwatch, emit, rate
from bench.platform import cleanup, raw_consume, servers
from qastream_reporting import facts
from qastream_reporting.app import SPEC
from qastream_reporting.deltas import append, compact
from qastream_reporting.facts import ConversationFact, ConversationState, RatingFact, ReviewFact
from qastream_reporting.tables import freshness, reviews
from qastream_shared import events as ev
from qastream_shared.events import Envelope, conversation_key
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, isolated_settings, produce_envelopes
from qastream_shared.topics import REVIEWS, ensure_topics, physical
from tests.integration.conftest import Proc

STREAMED, LOADED = "stream", "big"
TARGET_PER_S = 5000
TARGET_P95_MS = 100
CATEGORIES = [f"cat-{i}" for i in range(10)]
DAY0 = date(2026, 1, 1)
WITHIN_S = 300
PERIOD = 12_600  # lcm of the cycles in `synthetic`: 90 days, 100 agents, 40 probabilities, 7 reviewers, …
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("quality", {}),
    ("quality", {"group_by": "team"}),
    ("quality", {"group_by": "week"}),
    ("quality", {"group_by": "agent_id", "limit": 100}),
    ("quality", {"scorecard_version": 2, "group_by": "channel"}),
    ("categories", {"group_by": "category_id"}),
    ("root-causes", {"group_by": "root_cause"}),
    ("agreement", {"group_by": "category_id"}),
    ("customer", {"group_by": "team"}),
    ("design-weighted", {"group_by": "team"}),
    ("csat-correlation", {}),
    ("pcsat", {"group_by": "team"}),
    ("reviewers", {"group_by": "reviewer_id"}),
    ("disputes", {}),
    ("coaching", {}),
]


def review_event(i: int) -> Envelope:
    cid = f"c{i}"
    ratings = [
        ev.Rating(
            category_id=c,
            value=(i * 7 + k) % 5 + 1,
            score=((i * 7 + k) % 5) / 4,
            root_causes=["process"] if (i * 7 + k) % 5 == 0 else [],
            provenance=ev.Provenance(scorer="phrases", version="1.0.0", confidence=0.8),
        )
        for k, c in enumerate(CATEGORIES)
    ]
    agent = i % 100
    return Envelope(
        data=ev.ReviewSubmitted(
            review_id=f"r{i}",
            conversation_id=cid,
            kind=ev.ReviewKind.auto,
            scorecard_id="cs",
            scorecard_version=1,
            scorer_versions={"phrases": "1.0.0"},
            agent_id=f"agent-{agent}",
            team=f"team-{agent // 10}",
            channel=("chat", "email", "voice")[i % 3],
            ratings=ratings,
            score=sum(r.score or 0 for r in ratings) / len(ratings),
            passed=i % 3 == 0,
            pcsat=ev.PredictedCsat(model_version="p1", predicted=1 + (i % 40) / 10) if i % 3 else None,
            submitted_at=datetime.now(UTC),
        ),
        source="bench",
        tenant=STREAMED,
        key=conversation_key(STREAMED, cid),
    )


async def projection_rate(settings: Settings, runtime: ServiceRuntime, n: int, proc: Proc) -> dict[str, Any]:
    async def projected() -> int:
        try:
            async with runtime.sessions() as s:
                return int((await s.execute(text("SELECT count(*) FROM inbox"))).scalar_one())
        except Exception:  # the process has not migrated its schema yet
            return 0

    deadline = time.monotonic() + WITHIN_S
    while (first := await projected()) == 0:
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"reporting projected nothing:\n{proc.output()}")
        await asyncio.sleep(0.01)
    clock = Stopwatch()
    while await projected() < n:
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"reporting stopped short of {n} events:\n{proc.output()}")
        await asyncio.sleep(0.02)
    clock.stop()
    counted = n - first
    return rate(
        counted,
        clock.seconds,
        skipped_at_first_sight=first,
        target=TARGET_PER_S,
        met=counted / clock.seconds >= TARGET_PER_S,
    )


def synthetic(i: int, day0: date = DAY0) -> ConversationState:
    """Conversation i of the loaded tenant, with its reviews, on one of the 90 days from `day0`."""
    day = day0 + timedelta(days=i % 90)
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    agent = i % 100
    agent_id, team, channel = f"agent-{agent}", f"team-{agent // 10}", ("chat", "email", "voice")[i % 3]
    conv = ConversationFact(
        day=day, csat=(i % 5) + 1 if i % 5 == 0 else None, agent_id=agent_id, team=team, channel=channel
    )

    def ratings(salt: int) -> tuple[RatingFact, ...]:
        return tuple(
            RatingFact(c, v + 1, v / 4, ("process",) if v == 0 else ())
            for k, c in enumerate(CATEGORIES)
            for v in [((i + salt) * 7 + k) % 5]
        )

    state = ConversationState(conv)
    for version in (1, 2) if i % 10 == 0 else (1,):
        rs = ratings(version)
        state.reviews[f"r{i}v{version}"] = ReviewFact(
            review_id=f"r{i}v{version}",
            kind="auto",
            scorecard_id="cs",
            scorecard_version=version,
            submitted_at=at,
            ratings=rs,
            score=sum(r.score or 0 for r in rs) / len(rs),
            passed=i % 3 == 0,
            pcsat=1 + (i % 40) / 10 if i % 3 else None,
            agent_id=agent_id,
            team=team,
            channel=channel,
        )
    if i % 20 == 0:
        rs = ratings(7)
        state.reviews[f"r{i}m"] = ReviewFact(
            review_id=f"r{i}m",
            kind="manual",
            scorecard_id="cs",
            scorecard_version=1,
            submitted_at=at,
            ratings=rs,
            score=sum(r.score or 0 for r in rs) / len(rs),
            passed=i % 2 == 0,
            inclusion_probability=0.05 if i % 40 else 0.2,
            reviewer_id=f"rev-{i % 7}",
            time_spent_s=120.0,
            agent_id=agent_id,
            team=team,
            channel=channel,
        )
    return state


SEED_REVIEWS = text(
    """
    INSERT INTO reviews (tenant_id, review_id, conversation_id, kind, scorecard_id, scorecard_version, revision,
                         reviewer_id, agent_id, team, channel, score, auto_failed, passed, inclusion_probability,
                         time_spent_s, pcsat, submitted_at, day, ratings)
    SELECT :tenant, 'r' || g, 'c' || g, 'auto', 'cs', 1, 0, NULL, 'agent-' || (g % 100), 'team-' || (g % 100 / 10),
           'chat', (g % 5) / 4.0, false, g % 3 = 0, NULL, NULL, NULL,
           timestamptz '2026-01-01 12:00Z' + (g % 90) * interval '1 day', date '2026-01-01' + (g % 90), '[]'::jsonb
    FROM generate_series(1, :rows) AS g
    """
)


async def load(runtime: ServiceRuntime, n_reviews: int) -> dict[str, Any]:
    """Untimed set-up: the reviews table by SQL, the rollups through the projection's contributions.

    Conversation i's facts depend on i only modulo PERIOD (days, agents, channels, scores, versions, manual
    samples and reviewers all cycle within it), so the contributions of the whole periods are one period's
    times their number: the same rollups as adding every conversation, in seconds instead of half an hour.
    """
    clock = Stopwatch()
    async with runtime.engine.begin() as conn:
        await conn.execute(SEED_REVIEWS, {"tenant": LOADED, "rows": n_reviews})
    period: facts.Contributions = {}
    per_period = 0
    for i in range(PERIOD):
        state = synthetic(i)
        per_period += len(state.reviews)
        facts.accumulate(period, state, 1)
    periods = max(0, n_reviews // per_period - 1)  # the last stretch conversation by conversation
    diff = {name: {k: [x * periods for x in v] for k, v in rows.items()} for name, rows in period.items()}
    reviews_seen, i = periods * per_period, periods * PERIOD
    while reviews_seen < n_reviews:
        state = synthetic(i)
        i += 1
        reviews_seen += len(state.reviews)
        facts.accumulate(diff, state, 1)
    async with runtime.sessions() as s, s.begin():
        await append(s, LOADED, diff)
        await compact(s)
    async with runtime.sessions() as s, s.begin():
        now = datetime.now(UTC)
        await s.execute(freshness.insert().values(tenant_id=LOADED, review_time=now, projected_at=now))
        await s.execute(text("ANALYZE"))
        rows = {
            name: int(
                (
                    await s.execute(text(f"SELECT count(*) FROM {name} WHERE tenant_id = :t"), {"t": LOADED})
                ).scalar_one()
            )
            for name in facts.ROLLUPS
        }
    clock.stop()
    return {
        "reviews": reviews_seen,
        "conversations": i,
        "rollup_rows": rows,
        "load_seconds": round(clock.seconds, 1),
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2)}


async def latencies(http: httpx.AsyncClient, key: str, runtime: ServiceRuntime, n: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}

    async def timed(call: Any) -> dict[str, float]:
        await call()  # warm-up
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            await call()
            samples.append(1000 * (time.perf_counter() - started))
        return percentiles(samples)

    out: dict[str, Any] = {}
    for path, params in QUERIES:
        name = path + "".join(f" {k}={v}" for k, v in params.items())

        async def call(path: str = path, params: dict[str, Any] = params) -> None:
            r = await http.get(f"/v1/metrics/{path}", params=params, headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"{path}: {r.status_code} {r.text}")

        out[name] = {**await timed(call), "target_p95_ms": TARGET_P95_MS}
        out[name]["met"] = out[name]["p95_ms"] <= TARGET_P95_MS

    async def healthz() -> None:
        await http.get("/healthz")

    async def naive() -> None:
        async with runtime.sessions() as s:
            await s.execute(select(func.avg(reviews.c.score)).where(reviews.c.tenant_id == LOADED))

    baselines = {"healthz": await timed(healthz), "naive_scan_of_reviews": await timed(naive)}
    return {"queries": out, "baselines": baselines}


async def main(events: int, n_reviews: int, n_queries: int) -> dict[str, Any]:
    db, kafka = servers()
    settings = isolated_settings(db, kafka)
    runtime = ServiceRuntime(SPEC, settings)
    proc = None
    try:
        await ensure_topics(settings)
        await add_tenant(settings, STREAMED)
        key = await add_tenant(settings, LOADED)
        await produce_envelopes(
            settings, physical(REVIEWS, settings), [review_event(i) for i in range(events)]
        )
        consumed = await raw_consume(settings, physical(REVIEWS, settings), events)
        await migrate(settings, runtime.schema, SPEC.migrations)
        port = free_port()
        proc = Proc(["-m", "qastream_reporting"], settings, {"QA_HTTP_PORT": str(port)})
        projection = await projection_rate(settings, runtime, events, proc)
        loaded = await load(runtime, n_reviews)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            timings = await latencies(http, key, runtime, n_queries)
    finally:
        if proc is not None:
            proc.stop()
        await cleanup(ServiceRuntime(SPEC, settings), settings)
        await runtime.engine.dispose()
    worst = max(q["p95_ms"] for q in timings["queries"].values())
    return {
        "kafka": kafka,
        "raw_consume": consumed,
        "projection": projection,
        "projection_over_raw_consume": round(projection["per_s"] / consumed["per_s"], 3),
        "loaded": loaded,
        **timings,
        "worst_p95_ms": worst,
        "worst_p95_over_healthz_p95": round(worst / timings["baselines"]["healthz"]["p95_ms"], 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--reviews", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--tiny", action="store_true", help="CI smoke size")
    args = parser.parse_args()
    if args.tiny:
        args.events, args.reviews, args.queries = 1_000, 2_000, 3
    emit(asyncio.run(main(args.events, args.reviews, args.queries)))
