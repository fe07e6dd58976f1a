"""Rules judge in event time whatever the arrival order, on the real database: the same reviews handled in
event order and in another order (a replay whose partitions interleave differently) give the same tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from qastream_coaching import store
from qastream_coaching.app import SPEC
from qastream_coaching.rules import Rule
from qastream_coaching.tables import evidence, tasks
from qastream_shared.db import drop_schema
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from tests.integration.coaching_fixtures import submitted
from tests.integration.test_coaching_history import handle

pytestmark = pytest.mark.integration

RULES = [
    Rule(
        rule_id="empathy-thrice",
        trigger="category_failures",
        category_id="empathy",
        k=3,
        window_days=7,
        title="t",
    ),
    Rule(rule_id="iqs", trigger="iqs_drop", drop_points=10, min_reviews=2, title="t"),
]
FAILED = {"empathy": 0.25, "greeting": 1.0}
PASSED = {"empathy": 1.0, "greeting": 1.0}
# ann: empathy failed on days 0, 1 and 2 (the third makes the case); bob: two good weeks, then a bad one.
REVIEWS = [
    submitted("acme", "a1", agent="ann", score=0.9, cats=FAILED, day=0),
    submitted("acme", "a2", agent="ann", score=0.9, cats=FAILED, day=1),
    submitted("acme", "a3", agent="ann", score=0.9, cats=FAILED, day=2),
    submitted("acme", "b1", agent="bob", score=0.95, cats=PASSED, day=0),
    submitted("acme", "b2", agent="bob", score=0.95, cats=PASSED, day=1),
    submitted("acme", "b3", agent="bob", score=0.6, cats=PASSED, day=8),
    submitted("acme", "b4", agent="bob", score=0.6, cats=PASSED, day=9),
]


@pytest.fixture
async def two_schemas(settings: Settings) -> AsyncIterator[tuple[ServiceRuntime, ServiceRuntime]]:
    runtimes = []
    assert settings.db_schema  # the test's own (isolated_settings)
    for suffix in ("_in_order", "_other_order"):
        rt = ServiceRuntime(SPEC, settings.model_copy(update={"db_schema": settings.db_schema + suffix}))
        await migrate(rt.settings, rt.schema, SPEC.migrations)
        async with rt.unit_of_work() as uow:
            for rule in RULES:
                await store.save_rule(uow.session, "acme", rule)
        runtimes.append(rt)
    yield runtimes[0], runtimes[1]
    for rt in runtimes:
        await drop_schema(rt.engine, rt.schema)
        await rt.engine.dispose()


async def tasks_of(rt: ServiceRuntime) -> dict[str, Any]:
    """task id → (agent, category, status, evidence review ids)."""
    async with rt.sessions() as s:
        rows = (await s.execute(select(tasks))).mappings().all()
        ev = (await s.execute(select(evidence.c.task_id, evidence.c.review_id))).all()
    by_task: dict[str, list[str]] = {}
    for t, r in ev:
        by_task.setdefault(t, []).append(r)
    return {
        r["task_id"]: (r["agent_id"], r["category_id"], r["status"], sorted(by_task.get(r["task_id"], [])))
        for r in rows
    }


async def test_the_same_reviews_in_another_order_give_the_same_tasks(two_schemas):
    in_order, other_order = two_schemas
    for env in REVIEWS:
        await handle(in_order, env)
    expected = await tasks_of(in_order)
    assert sorted(v for v in expected.values()) == [
        ("ann", "empathy", "open", ["a1", "a2", "a3"]),
        ("bob", None, "open", ["b3", "b4"]),
    ]
    # Latest first, one batch each: every review arrives after the ones it should have counted.
    for env in reversed(REVIEWS):
        await handle(other_order, env)
    assert await tasks_of(other_order) == expected
