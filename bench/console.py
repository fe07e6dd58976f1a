"""The console's latency in headless chromium: the dashboard's first meaningful paint and each drill-down step
(dashboard -> agent -> review), p50/p95 over repeated visits, beside the raw baseline measured in the same
run: the same API calls each page makes, made directly (no browser), so the ratio is what the page adds.

    uv run python -m bench.console                       # 2,000 conversations (each AutoQA-reviewed)
    uv run python -m bench.console --conversations 50 --visits 3   # CI smoke

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
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from qastream_shared.testing import eventually, isolated_settings
from tests.browser import stack as pipeline
from tests.browser.browser import Session, chromium


def pcts(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, max(0, round(0.95 * len(xs)) - 1))]
    return {"p50_ms": round(statistics.median(xs), 1), "p95_ms": round(p95, 1), "n": len(xs)}


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


def measure(s: pipeline.LiveStack, visits: int) -> dict[str, Any]:
    since = (datetime.now(UTC) - timedelta(days=89)).date().isoformat()
    agents = httpx.get(
        s.url("reporting") + "/v1/metrics/quality",
        params={"group_by": "agent_id", "limit": 1, "from": since},
        headers=s.auth("lead"),
    ).json()["items"]
    agent = agents[0]["agent_id"]
    reviews = httpx.get(
        s.url("scoring") + "/v1/reviews", params={"agent_id": agent, "limit": 1}, headers=s.auth("lead")
    ).json()["items"]
    review = reviews[0]
    steps: dict[str, list[float]] = {"dashboard_first_meaningful_paint": [], "agent": [], "review": []}
    raw: dict[str, list[float]] = {k: [] for k in steps}
    agent_calls = [
        ("reporting", "/v1/metrics/quality", {"agent_id": agent}),
        ("reporting", "/v1/metrics/customer", {"agent_id": agent}),
        ("reporting", "/v1/metrics/categories", {"agent_id": agent, "group_by": "category_id", "limit": 200}),
        ("scoring", "/v1/reviews", {"agent_id": agent, "limit": 25}),
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
            raw["dashboard_first_meaningful_paint"].append(baseline(s, dashboard_calls(since)[:3]))
            page.click(f"#agents a[href='/agents/{agent}']")
            steps["agent"].append(mark(page, "qa-loaded"))
            raw["agent"].append(baseline(s, agent_calls))
            page.goto(s.console + f"/reviews/{review['review_id']}")
            steps["review"].append(mark(page, "qa-loaded"))
            raw["review"].append(baseline(s, review_calls))
        session.close()
    out: dict[str, Any] = {}
    for k in steps:
        browser_p = pcts(steps[k])
        raw_p = pcts(raw[k])
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--visits", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="CI smoke size: 20 conversations, 2 visits")
    args = parser.parse_args()
    if args.tiny:
        args.conversations, args.visits = 20, 2
    settings = isolated_settings(os.environ["DATABASE_URL"], os.environ["KAFKA_BOOTSTRAP_SERVERS"])

    async def up() -> pipeline.LiveStack:
        s = await pipeline.start(settings)
        await load(s, args.conversations)
        return s

    s = asyncio.run(up())
    try:
        result = {
            "conversations": args.conversations,
            "reviews": args.conversations,
            **measure(s, args.visits),
        }
    finally:
        s.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
