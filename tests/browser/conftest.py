"""The console's browser tests share one live pipeline (five service processes) per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from qastream_shared.testing import eventually, isolated_settings
from tests.browser import stack as pipeline
from tests.browser.browser import chromium


def _ok(r: httpx.Response) -> Any:
    assert r.status_code < 300, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    return r.json() if r.content else None


@pytest.fixture(scope="module")
async def live(database_url: str, kafka_bootstrap: str) -> AsyncIterator[pipeline.LiveStack]:
    """The pipeline with one tenant: a reviewer pool, a plan sending every conversation to people, a
    coaching rule on reviews below the pass mark, and 12 real STAR conversations of agent-1 and agent-2,
    each AutoQA-scored and assigned before any test runs."""
    settings = isolated_settings(database_url, kafka_bootstrap)
    s = await pipeline.start(settings)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            lead = s.auth("lead")
            _ok(
                await http.put(
                    f"{s.url('scoring')}/v1/reviewers",
                    headers=lead,
                    json={"reviewers": [{"reviewer_id": "rev-1"}]},
                )
            )
            _ok(
                await http.post(
                    f"{s.url('sampler')}/v1/plans",
                    headers=lead,
                    json={
                        "plan_id": "everything",
                        "kind": "random",
                        "name": "Every conversation",
                        "rate": 1.0,
                    },
                )
            )
            _ok(
                await http.post(
                    f"{s.url('coaching')}/v1/rules",
                    headers=lead,
                    json={
                        "rule_id": "below-pass",
                        "trigger": "below_pass_mark",
                        "title": "Go through this review with your lead",
                    },
                )
            )
            conversations = pipeline.star(12, agents={"agent-1": "team-a", "agent-2": "team-b"})
            for i, c in enumerate(conversations):
                c["csat"] = 1 + i % 5
            await pipeline.ingest(s, conversations)

            async def scored_and_assigned() -> bool:
                q = await http.get(
                    f"{s.url('reporting')}/v1/metrics/quality", headers=lead, params={"kind": "auto"}
                )
                a = await http.get(
                    f"{s.url('scoring')}/v1/assignments", headers=lead, params={"status": "open"}
                )
                return (
                    q.status_code == 200
                    and q.json()["items"]
                    and q.json()["items"][0]["reviews"] == len(conversations)
                    and a.status_code == 200
                    and len(a.json()["items"]) == len(conversations)
                )

            await eventually(scored_and_assigned, within=300, every=0.5)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def chrome() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def deadline_in(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")
