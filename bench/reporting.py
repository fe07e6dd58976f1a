"""Reporting: projection throughput beside raw consume, and metrics query latency over a large tenant.

    uv run python -m bench.reporting [--events 20000] [--reviews 1000000] [--queries 40]
    uv run python -m bench.reporting --tiny        # CI smoke: one batch + 2,000 events, 2,000 reviews, 3 queries

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
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, text

from bench.common import Stopwatch, emit, percentiles, rate
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
    ("disputes", {"group_by": "team"}),
    ("coaching", {}),
    ("coaching", {"group_by": "agent_id", "limit": 100}),
    ("assignments", {"group_by": "reviewer_id"}),
    ("assignments", {"group_by": "team"}),
    ("risk-alerts", {"group_by": "team"}),
    ("calibrations", {"group_by": "week"}),
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
    if counted <= 0:
        raise RuntimeError(f"all {n} events fell in the first, uncounted batch: pass more --events")
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


def rollups(n_reviews: int, day0: date) -> tuple[facts.Contributions, int, int]:
    """The rollup rows of the synthetic conversations holding `n_reviews` reviews, by reporting's own
    contribution code, with the numbers of reviews and conversations: one period computed, scaled by the
    whole periods (every rollup value is a sum), and the rest conversation by conversation."""
    for i in range(0, PERIOD, 997):  # the period is checked, not assumed
        if facts.contributions(synthetic(i, day0)) != facts.contributions(synthetic(i + PERIOD, day0)):
            raise RuntimeError(f"bench.reporting.synthetic no longer repeats every {PERIOD} conversations")
    one, rest = facts.Sums(), facts.Sums()
    per_period = 0
    for i in range(PERIOD):
        state = synthetic(i, day0)
        per_period += len(state.reviews)
        facts.accumulate(one, state, 1)
    whole = n_reviews // per_period
    seen, i = whole * per_period, whole * PERIOD
    while seen < n_reviews:
        state = synthetic(i, day0)
        i += 1
        seen += len(state.reviews)
        facts.accumulate(rest, state, 1)
    diff = {
        table: {k: [whole * v for v in values] for k, values in rows.items()}
        for table, rows in one.flat().items()
    }
    for table, rows in rest.flat().items():
        into = diff.setdefault(table, {})
        for k, values in rows.items():
            old = into.get(k)
            into[k] = values if old is None else [a + b for a, b in zip(old, values, strict=True)]
    return diff, seen, i


# The loaded tenant's workflow rows, at ratios to its conversations (`:conversations`): an assignment per
# 17 (the manual samples, 85% of them completed: the 5% reviewed by people), a dispute per 500 (4% of the
# manual reviews), a risk alert per 200; 2 coaching tasks per agent and week (100 agents, 13 weeks), and a
# calibration session per team and week. Days, agents, teams and reviewers cycle as in `synthetic`.


def _scope(k: str) -> str:
    """The agent and team of the k-th row: every agent in turn, as in `synthetic`."""
    return f"'agent-' || ({k}) % 100, 'team-' || ({k}) % 100 / 10"


_DAY = "date '2026-01-01' + (g % 90), timestamptz '2026-01-01 12:00Z' + (g % 90) * interval '1 day'"
SEED_WORKFLOW = [
    text(
        f"""
        INSERT INTO assignments (tenant_id, assignment_id, conversation_id, reviewer_id, action,
                                 inclusion_probability, day, created_at, changed_at, agent_id, team)
        SELECT :tenant, 'a' || g, 'c' || g, 'rev-' || (g % 7),
               CASE WHEN g % 100 < 85 THEN 'completed' WHEN g % 100 < 95 THEN 'created'
                    WHEN g % 100 < 98 THEN 'skipped' ELSE 'removed' END,
               0.05, {_DAY}, timestamptz '2026-01-01 15:00Z' + (g % 90) * interval '1 day', {_scope("g / 17")}
        FROM generate_series(0, :conversations - 1, 17) AS g
        """
    ),
    text(
        f"""
        INSERT INTO disputes (tenant_id, dispute_id, review_id, conversation_id, category_id, agent_id, team,
                              opened_by, day, opened_at, outcome, resolved_by, resolved_at)
        SELECT :tenant, 'd' || g, 'r' || g || 'm', 'c' || g, 'cat-' || (g / 500 % 10), {_scope("g / 500")},
               'agent-' || (g / 500 % 100),
               {_DAY},
               (ARRAY['accepted', 'partially_accepted', 'rejected', NULL])[g / 500 % 4 + 1],
               CASE WHEN g / 500 % 4 < 3 THEN 'rev-0' END,
               CASE WHEN g / 500 % 4 < 3 THEN timestamptz '2026-01-02 12:00Z' + (g % 90) * interval '1 day' END
        FROM generate_series(0, :conversations - 1, 500) AS g
        """
    ),
    text(
        f"""
        INSERT INTO risk_alerts (tenant_id, alert_id, review_id, conversation_id, agent_id, team, rule_id,
                                 categories, reason, day, raised_at)
        SELECT :tenant, 'al' || g, 'r' || g || 'v1', 'c' || g, {_scope("g / 200")},
               (ARRAY['threat', 'profanity'])[g / 200 % 2 + 1], 1, 'matched a risk phrase', {_DAY}
        FROM generate_series(0, :conversations - 1, 200) AS g
        """
    ),
    text(
        """
        INSERT INTO coaching_tasks (tenant_id, task_id, rule_id, agent_id, team, category_id, status, day,
                                    created_at, updated_at)
        SELECT :tenant, 't' || g, 'low-category', 'agent-' || (g % 100), 'team-' || (g % 100 / 10),
               'cat-' || (g % 10), (ARRAY['open', 'acknowledged', 'completed', 'dismissed'])[g % 4 + 1],
               date '2026-01-01' + (g / 100 * 7 / 2) % 90,
               timestamptz '2026-01-01 12:00Z' + ((g / 100 * 7 / 2) % 90) * interval '1 day',
               timestamptz '2026-01-02 12:00Z' + ((g / 100 * 7 / 2) % 90) * interval '1 day'
        FROM generate_series(0, 2599) AS g
        """
    ),
    text(
        """
        INSERT INTO calibrations (tenant_id, session_id, scorecard_id, scorecard_version, conversations,
                                  participants, opened_at, closed_at, day, alpha)
        SELECT :tenant, 's' || g, 'cs', 1, 10, 4,
               timestamptz '2026-01-01 09:00Z' + (g / 10 * 7 % 90) * interval '1 day',
               timestamptz '2026-01-01 17:00Z' + (g / 10 * 7 % 90) * interval '1 day',
               date '2026-01-01' + g / 10 * 7 % 90, 0.5 + (g % 40) / 100.0
        FROM generate_series(0, 129) AS g
        """
    ),
]
WORKFLOW_TABLES = ("assignments", "disputes", "risk_alerts", "coaching_tasks", "calibrations")


async def load(runtime: ServiceRuntime, n_reviews: int) -> dict[str, Any]:
    """Untimed set-up: the reviews table by SQL, the rollups through the projection's contributions.

    Conversation i's facts depend on i only modulo PERIOD (days, agents, channels, scores, versions, manual
    samples and reviewers all cycle within it), so the contributions of the whole periods are one period's
    times their number: the same rollups as adding every conversation, in seconds instead of half an hour.
    """
    clock = Stopwatch()
    async with runtime.engine.begin() as conn:
        await conn.execute(SEED_REVIEWS, {"tenant": LOADED, "rows": n_reviews})
    diff, reviews_seen, conversations = rollups(n_reviews, DAY0)
    async with runtime.engine.begin() as conn:
        for statement in SEED_WORKFLOW:
            await conn.execute(statement, {"tenant": LOADED, "conversations": conversations})
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
            for name in (*facts.ROLLUPS, *WORKFLOW_TABLES)
        }
    clock.stop()
    return {
        "reviews": reviews_seen,
        "conversations": conversations,
        "rows": rows,
        "load_seconds": round(clock.seconds, 1),
    }


async def latencies(http: httpx.AsyncClient, key: str, runtime: ServiceRuntime, n: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}

    async def timed(call: Any) -> dict[str, float]:
        await call()  # warm-up
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            await call()
            samples.append(1000 * (time.perf_counter() - started))
        return percentiles(samples, (50, 95), digits=2)

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
        # the first batch is not counted: one batch and a bit more leaves something to time
        first = SPEC.consumer_batch_size or Settings.model_fields["consumer_batch_size"].default
        args.events, args.reviews, args.queries = first + 2_000, 2_000, 3
    emit(asyncio.run(main(args.events, args.reviews, args.queries)))
