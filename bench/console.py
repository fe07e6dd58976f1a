"""The console's latency in headless chromium: the dashboard's first meaningful paint and each drill-down step
(dashboard -> agent -> review), p50/p95 over repeated visits, beside the raw baseline measured in the same
run: the same API calls each page makes, made directly (no browser), so the ratio is what the page adds.

    uv run python -m bench.console                       # 2,000 conversations (each AutoQA-reviewed)
    uv run python -m bench.console --conversations 50 --visits 3   # CI smoke
    uv run python -m bench.console --conversations 200 --reviews 1000000   # the issue's 1,000,000 reviews

`--reviews N` adds N synthetic reviews to the tenant without the pipeline (a million through Kafka and
AutoQA would take hours): SQL `INSERT … SELECT generate_series` into scoring's reviews table (what the agent
page lists) and the rollups written by reporting's own contribution code (what every figure reads), the way
bench.reporting loads its tenant: 100 agents over the last 90 days, 10% re-scored, 5% reviewed by people.
The pipeline's real conversations stay, so the review step opens a real transcript.

Runs on the project's stack (`qa up --no-services`, then `eval "$(uv run qa env)"`): it starts the five
services itself. First meaningful paint = navigation start until the headline figures are drawn
(performance mark `qa-meaningful`); a drill-down step = navigation start until the page's data is drawn
(`qa-loaded`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from bench.common import percentiles
from bench.reporting import rollups
from qastream_reporting.app import SPEC as REPORTING
from qastream_reporting.deltas import append, compact
from qastream_scoring.app import SPEC as SCORING
from qastream_shared.db import drop_schema
from qastream_shared.runtime import ServiceRuntime, ServiceSpec
from qastream_shared.testing import eventually, isolated_settings
from tests.browser import stack as pipeline
from tests.browser.browser import Session, chromium

SEEDED = "seed-"  # the synthetic reviews' id prefix: they have no conversation in ingest
SEED_SCORING = text(
    """
    INSERT INTO reviews (review_id, tenant_id, conversation_id, kind, scorecard_id, scorecard_version,
                         scorer_versions, ratings, score, auto_failed, passed, agent_id, team, channel,
                         submitted_at)
    SELECT 'seed-r' || g, :tenant, 'seed-c' || g, 'auto', :scorecard_id, :scorecard_version, '{}'::jsonb,
           '[]'::jsonb, (g % 5) / 4.0, false, g % 3 = 0, 'agent-' || (g % 100), 'team-' || (g % 100 / 10),
           (ARRAY['chat', 'email', 'voice'])[g % 3 + 1],
           CAST(:day0 AS timestamptz) + (g % 90) * interval '1 day' + interval '12 hours'
    FROM generate_series(1, :rows) AS g
    """
)


def mark(page: Any, name: str) -> float:
    page.wait_for_function(f"performance.getEntriesByName('{name}').length > 0", timeout=60_000)
    return float(page.evaluate(f"performance.getEntriesByName('{name}')[0].startTime"))


def dashboard_calls(since: str) -> list[tuple[str, str, dict[str, Any]]]:
    base = {"from": since}
    return [
        ("reporting", "/v1/metrics/quality", base),
        ("reporting", "/v1/metrics/customer", base),
        ("reporting", "/v1/metrics/design-weighted", base),
        ("reporting", "/v1/metrics/quality", {**base, "group_by": "day", "limit": 400}),
        ("reporting", "/v1/metrics/categories", {**base, "group_by": "category_id", "limit": 200}),
        ("reporting", "/v1/metrics/agreement", {**base, "group_by": "category_id", "limit": 200}),
        ("reporting", "/v1/metrics/csat-correlation", base),
        ("reporting", "/v1/metrics/quality", {**base, "group_by": "agent_id", "limit": 25}),
    ]


def baseline(s: pipeline.LiveStack, calls: list[tuple[str, str, dict[str, Any]]]) -> float:
    """The page's API calls made concurrently, as the page makes them: wall time in ms."""
    with httpx.Client(timeout=60, headers=s.auth("lead")) as http, ThreadPoolExecutor(len(calls)) as pool:
        t0 = time.perf_counter()
        rs = list(pool.map(lambda c: http.get(s.url(c[0]) + c[1], params=c[2]), calls))
        elapsed = (time.perf_counter() - t0) * 1000
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200]
    return elapsed


def drill_down_target(s: pipeline.LiveStack, since: str) -> tuple[str, dict[str, Any]]:
    """An agent on the dashboard's first page and their newest review that has a real conversation."""
    agents = httpx.get(
        s.url("reporting") + "/v1/metrics/quality",
        params={"group_by": "agent_id", "limit": 25, "from": since},
        headers=s.auth("lead"),
    ).json()["items"]
    for a in agents:
        newest = httpx.get(
            s.url("scoring") + "/v1/reviews",
            params={"agent_id": a["agent_id"], "limit": 1},
            headers=s.auth("lead"),
        ).json()["items"]
        if newest and not newest[0]["review_id"].startswith(SEEDED):
            return a["agent_id"], newest[0]
    raise RuntimeError("no agent on the dashboard's first page has a real review")


def measure(s: pipeline.LiveStack, visits: int) -> dict[str, Any]:
    since = (datetime.now(UTC) - timedelta(days=89)).date().isoformat()
    agent, review = drill_down_target(s, since)
    steps: dict[str, list[float]] = {"dashboard_first_meaningful_paint": [], "agent": [], "review": []}
    raw: dict[str, list[float]] = {k: [] for k in steps}
    agent_calls: list[tuple[str, str, dict[str, Any]]] = [
        ("reporting", "/v1/metrics/quality", {"agent_id": agent}),
        ("reporting", "/v1/metrics/customer", {"agent_id": agent}),
        ("reporting", "/v1/metrics/categories", {"agent_id": agent, "group_by": "category_id", "limit": 200}),
        ("scoring", "/v1/reviews", {"agent_id": agent, "limit": 25}),
        ("scoring", "/v1/scorecards", {}),
    ]
    review_calls: list[tuple[str, str, dict[str, Any]]] = [
        ("scoring", f"/v1/reviews/{review['review_id']}/history", {}),
        ("scoring", f"/v1/scorecards/{review['scorecard_id']}/versions/{review['scorecard_version']}", {}),
        ("ingest", f"/v1/conversations/{review['conversation_id']}", {}),
    ]
    with chromium() as browser:
        session = Session(browser, s, "lead")
        session.sign_in()
        page = session.page
        for _ in range(visits):
            page.goto(s.console + "/dashboard")
            steps["dashboard_first_meaningful_paint"].append(mark(page, "qa-meaningful"))
            mark(page, "qa-loaded")  # the page's other calls are done: they must not slow the baseline's
            raw["dashboard_first_meaningful_paint"].append(baseline(s, dashboard_calls(since)[:3]))
            page.click(f"#agents a[href='/agents/{agent}']")
            page.wait_for_url(f"**/agents/{agent}")  # else the mark read could be the dashboard's own
            steps["agent"].append(mark(page, "qa-loaded"))
            raw["agent"].append(baseline(s, agent_calls))
            page.goto(s.console + f"/reviews/{review['review_id']}")
            steps["review"].append(mark(page, "qa-loaded"))
            raw["review"].append(baseline(s, review_calls))
        session.close()
    out: dict[str, Any] = {}
    for k in steps:
        browser_p = percentiles(steps[k], (50, 95))
        raw_p = percentiles(raw[k], (50, 95))
        out[k] = {
            "browser": browser_p,
            "raw_api_baseline": raw_p,
            "p95_ratio_to_baseline": round(browser_p["p95_ms"] / raw_p["p95_ms"], 2),
            "p95_within_1s": browser_p["p95_ms"] <= 1000,
        }
    return out


async def load(s: pipeline.LiveStack, n: int) -> None:
    agents = {f"agent-{i}": f"team-{i % 4}" for i in range(1, 41)}
    await pipeline.ingest(s, pipeline.star(n, agents=agents))
    async with httpx.AsyncClient(timeout=60, headers=s.auth("lead")) as http:

        async def reviewed() -> bool:
            r = await http.get(s.url("reporting") + "/v1/metrics/quality", params={"kind": "auto"})
            return r.status_code == 200 and bool(r.json()["items"]) and r.json()["items"][0]["reviews"] >= n

        await eventually(reviewed, within=max(300.0, n / 5), every=1.0)


def runtime_of(s: pipeline.LiveStack, spec: ServiceSpec) -> ServiceRuntime:
    """A service's runtime on the schema the stack gave it."""
    schema = pipeline.schema_of(s.settings, spec.name)
    return ServiceRuntime(spec, s.settings.model_copy(update={"db_schema": schema}))


async def seed(s: pipeline.LiveStack, n_reviews: int) -> dict[str, Any]:
    """N synthetic reviews in scoring's reviews table and in reporting's rollups (untimed set-up)."""
    started = time.perf_counter()
    day0 = (datetime.now(UTC) - timedelta(days=90)).date()
    async with httpx.AsyncClient(timeout=60, headers=s.auth("lead")) as http:
        card = (await http.get(s.url("scoring") + "/v1/scorecards")).json()[0]
    scoring, reporting = runtime_of(s, SCORING), runtime_of(s, REPORTING)
    try:
        async with scoring.engine.begin() as conn:
            await conn.execute(
                SEED_SCORING,
                {
                    "tenant": s.tenant,
                    "scorecard_id": card["scorecard_id"],
                    "scorecard_version": card["version"],
                    "day0": datetime(day0.year, day0.month, day0.day, tzinfo=UTC),
                    "rows": n_reviews,
                },
            )
            await conn.execute(text("ANALYZE reviews"))
        diff, seen, _ = rollups(n_reviews, day0)
        async with reporting.sessions() as session, session.begin():
            await append(session, s.tenant, diff)
            await compact(session)
        async with reporting.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    finally:
        await scoring.engine.dispose()
        await reporting.engine.dispose()
    return {
        "scoring_reviews": n_reviews,
        "reporting_reviews": seen,
        "seed_seconds": round(time.perf_counter() - started, 1),
    }


async def drop_seeded(s: pipeline.LiveStack) -> None:
    """The seeded schemas hold a million rows each: dropped, not left in the shared database."""
    for spec in (SCORING, REPORTING):
        runtime = runtime_of(s, spec)
        await drop_schema(runtime.engine, runtime.schema)
        await runtime.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--visits", type=int, default=20)
    parser.add_argument(
        "--reviews", type=int, default=0, help="synthetic reviews added by SQL (see above), e.g. 1000000"
    )
    parser.add_argument("--tiny", action="store_true", help="CI smoke size: 20 conversations, 2 visits")
    args = parser.parse_args()
    if args.tiny:
        args.conversations, args.visits = 20, 2
    settings = isolated_settings(os.environ["DATABASE_URL"], os.environ["KAFKA_BOOTSTRAP_SERVERS"])

    seeded: dict[str, Any] = {}

    async def up() -> pipeline.LiveStack:
        s = await pipeline.start(settings)
        try:
            await load(s, args.conversations)
            if args.reviews:
                seeded.update(await seed(s, args.reviews))
        except BaseException:
            s.stop()
            if args.reviews:
                await drop_seeded(s)
            raise
        return s

    s = asyncio.run(up())
    try:
        result = {
            "conversations": args.conversations,
            "reviews": args.conversations + seeded.get("reporting_reviews", 0),
            "seeded": seeded,
            **measure(s, args.visits),
        }
    finally:
        s.stop()
        if args.reviews:
            asyncio.run(drop_seeded(s))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
