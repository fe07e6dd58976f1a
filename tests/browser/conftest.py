"""The console's browser tests share one live pipeline (five service processes) per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from qastream_shared.events import Role
from qastream_shared.testing import eventually, isolated_settings
from tests.browser import stack as pipeline
from tests.browser.browser import chromium
from tests.browser.stack import Person

ACME_CONVERSATIONS = 12  # agent-1 (team-a) and agent-2 (team-b) take turns
# Another tenant whose agent and team bear acme's names: a leak across tenants would move acme's figures.
OTHER_TENANT = "globex"
OTHER_PEOPLE = (Person("other_admin", Role.admin, "admin-9"), Person("other_lead", Role.qa_lead, "lead-9"))
OTHER_CONVERSATIONS = 3


def _ok(r: httpx.Response) -> Any:
    assert r.status_code < 300, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    return r.json() if r.content else None


@pytest.fixture(scope="module")
async def live(database_url: str, kafka_bootstrap: str) -> AsyncIterator[pipeline.LiveStack]:
    """The pipeline with one tenant: a reviewer pool, a plan sending every conversation to people, a
    coaching rule on reviews below the pass mark, and 12 real STAR conversations of agent-1 and agent-2,
    each AutoQA-scored and assigned before any test runs; beside it another tenant with three conversations
    of its own agent-1 in its own team-a, scored too."""
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
            conversations = pipeline.star(
                ACME_CONVERSATIONS, agents={"agent-1": "team-a", "agent-2": "team-b"}
            )
            for i, c in enumerate(conversations):
                c["csat"] = 1 + i % 5
            await pipeline.ingest(s, conversations)
            await pipeline.add_tenant(s, OTHER_TENANT, OTHER_PEOPLE)
            others = pipeline.star(OTHER_CONVERSATIONS, agents={"agent-1": "team-a"})
            for c in others:
                c["csat"] = 5
            await pipeline.ingest(s, others, who="other_admin")

            async def reviews(who: str) -> int:
                q = await http.get(
                    f"{s.url('reporting')}/v1/metrics/quality", headers=s.auth(who), params={"kind": "auto"}
                )
                return q.json()["items"][0]["reviews"] if q.status_code == 200 and q.json()["items"] else 0

            async def scored_and_assigned() -> bool:
                a = await http.get(
                    f"{s.url('scoring')}/v1/assignments", headers=lead, params={"status": "open"}
                )
                return (
                    await reviews("lead") == len(conversations)
                    and await reviews("other_lead") == len(others)
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
