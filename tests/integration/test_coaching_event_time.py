"""Rules judge in event time whatever the arrival order, on the real database: the same reviews handled in
event order, in reverse, with one review arriving late, and all in one batch (as a replay from offset 0 reads
them) give the same tasks, opened by the same rules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from qastream_coaching.rules import Rule
from qastream_shared.db import drop_schema
from qastream_shared.events import CoachingTaskEvidenceAdded, evidence_after
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from tests.integration.coaching_fixtures import (
    EMPATHY_THRICE,
    FAILED,
    PASSED,
    handle,
    live,
    submitted,
    task_events,
    task_state,
    with_rules,
)

pytestmark = pytest.mark.integration

RULES = [
    Rule(rule_id="below-55", trigger="below_pass_mark", pass_mark=0.55, title="Far below the mark"),
    Rule(
        rule_id="empathy-twice",
        trigger="category_failures",
        category_id="empathy",
        k=2,
        window_days=7,
        title="Empathy failed twice",
    ),
    EMPATHY_THRICE,
    Rule(rule_id="iqs", trigger="iqs_drop", drop_points=10, min_reviews=2, title="IQS fell"),
]
# ann: empathy failed on days 0, 1 and 2, and the third review also scores far below the mark. Arriving first,
# that review would open the task under below-55; in event time empathy-twice opened it on day 1.
# bob: two good days, then a week later two bad ones: his 7-day IQS falls 35 points.
# cy: the same with milder bad days (a 15-point fall), but a perfect review of day 8.5 that arrives last brings
# the fall under 10 points: the task opened before it arrived must not outlive it.
LATE = submitted("acme", "c5", agent="cy", score=1.0, cats=PASSED, day=8.5)
EVENT_ORDER = [
    submitted("acme", "a1", agent="ann", score=0.9, cats=FAILED, day=0),
    submitted("acme", "a2", agent="ann", score=0.9, cats=FAILED, day=1),
    submitted("acme", "a3", agent="ann", score=0.5, cats=FAILED, day=2),
    submitted("acme", "b1", agent="bob", score=0.95, cats=PASSED, day=0),
    submitted("acme", "b2", agent="bob", score=0.95, cats=PASSED, day=1),
    submitted("acme", "b3", agent="bob", score=0.6, cats=PASSED, day=8),
    submitted("acme", "b4", agent="bob", score=0.6, cats=PASSED, day=9),
    submitted("acme", "c1", agent="cy", score=0.95, cats=PASSED, day=0),
    submitted("acme", "c2", agent="cy", score=0.95, cats=PASSED, day=1),
    submitted("acme", "c3", agent="cy", score=0.8, cats=PASSED, day=8),
    LATE,
    submitted("acme", "c4", agent="cy", score=0.8, cats=PASSED, day=9),
]
ARRIVAL = [e for e in EVENT_ORDER if e is not LATE] + [LATE]
ORDERS = ("event_order", "reversed", "late_arrival", "replay")


@pytest.fixture
async def runtimes(settings: Settings) -> AsyncIterator[dict[str, ServiceRuntime]]:
    assert settings.db_schema  # the test's own (isolated_settings)
    out = {
        name: await with_rules(
            settings.model_copy(update={"db_schema": f"{settings.db_schema}_{name}"}), RULES
        )
        for name in ORDERS
    }
    yield out
    for rt in out.values():
        await drop_schema(rt.engine, rt.schema)
        await rt.engine.dispose()


async def test_the_same_reviews_in_any_order_give_the_same_tasks(runtimes):
    for env in EVENT_ORDER:  # one batch each
        await handle(runtimes["event_order"], env)
    expected = await task_state(runtimes["event_order"])
    assert sorted(expected.values(), key=str) == [
        ("open", "ann", "empathy", ["a1", "a2", "a3"], "empathy-twice"),
        ("open", "bob", None, ["b3", "b4"], "iqs"),
    ]
    # a3 joined ann's task in a batch of its own: that event names a3 alone, and a consumer folding each task's
    # events still has its whole list.
    events = await task_events(runtimes["event_order"])
    added = [(e.added_review_ids, e.review_ids) for e in events if isinstance(e, CoachingTaskEvidenceAdded)]
    assert (["a3"], []) in added
    rebuilt: dict[str, list[str]] = {}
    for e in events:
        rebuilt[e.task_id] = evidence_after(rebuilt.get(e.task_id, []), e)
    assert {t: sorted(ids) for t, ids in rebuilt.items()} == {t: v[3] for t, v in expected.items()}
    # Latest first, one batch each: every review arrives after the ones it should have counted.
    for env in reversed(EVENT_ORDER):
        await handle(runtimes["reversed"], env)
    assert await task_state(runtimes["reversed"]) == expected

    # cy's late review arrives after the task its absence opened: the task is withdrawn (dismissed).
    for env in ARRIVAL:
        await handle(runtimes["late_arrival"], env)
    arrived = await task_state(runtimes["late_arrival"])
    assert [v for v in arrived.values() if v[1] == "cy"] == [("dismissed", "cy", None, [], "iqs")]
    assert live(arrived) == expected

    # A replay from offset 0 reads them in arrival order, in one batch.
    await handle(runtimes["replay"], *ARRIVAL)
    assert await task_state(runtimes["replay"]) == expected
