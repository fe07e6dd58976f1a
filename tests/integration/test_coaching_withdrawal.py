"""What a late review or a revision takes back, on the real database: each scenario runs once in event order and
once in another arrival order (one batch per event), and both must leave the same tasks: the same ids, the same
opener, the same `needs_confirmation`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from qastream_coaching.rules import Rule
from qastream_coaching.tables import tasks
from qastream_shared.db import drop_schema
from qastream_shared.events import CoachingTaskConfirmed, Envelope, ReviewKind
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from tests.integration.coaching_fixtures import (
    EMPATHY_THRICE,
    FAILED,
    PASSED,
    T0,
    handle,
    live,
    revised,
    submitted,
    task_events,
    task_state,
    with_rules,
)

pytestmark = pytest.mark.integration

IQS = Rule(rule_id="iqs", trigger="iqs_drop", drop_points=10, min_reviews=2, title="IQS fell")
CONFIRM = Rule(
    rule_id="below-confirmed", trigger="below_pass_mark", requires_confirmation=True, title="Below the mark"
)


@pytest.fixture
async def schemas(settings: Settings) -> AsyncIterator[Any]:
    made: list[ServiceRuntime] = []

    async def make(name: str, rules: list[Rule]) -> ServiceRuntime:
        assert settings.db_schema
        rt = await with_rules(
            settings.model_copy(update={"db_schema": f"{settings.db_schema}_{name}"}), rules
        )
        made.append(rt)
        return rt

    yield make
    for rt in made:
        await drop_schema(rt.engine, rt.schema)
        await rt.engine.dispose()


async def one_by_one(rt: ServiceRuntime, events: Sequence[Envelope]) -> None:
    for env in events:
        await handle(rt, env)


async def openings(rt: ServiceRuntime) -> dict[str, tuple[Any, ...]]:
    """task id → (status, rule, opened_at, due_at, needs_confirmation) of every task."""
    async with rt.sessions() as s:
        rows = (await s.execute(select(tasks))).mappings().all()
    return {
        r["task_id"]: (r["status"], r["rule_id"], r["opened_at"], r["due_at"], r["needs_confirmation"])
        for r in rows
    }


# dan's 7-day IQS falls 15 points on day 9 (d3, d4 against d1, d2) and more on day 10 (d5 is poor). A perfect
# review of day 8.5 that arrives last undoes the day-9 drop but not the day-10 one: the task keeps d3, d4, d5 and
# gains the late review, and its opener must become the day-10 firing, as in event order.
DAN_LATE = submitted("acme", "d-late", agent="dan", score=1.0, cats=PASSED, day=8.5)
DAN = [
    submitted("acme", "d1", agent="dan", score=0.95, cats=PASSED, day=0),
    submitted("acme", "d2", agent="dan", score=0.95, cats=PASSED, day=1),
    submitted("acme", "d3", agent="dan", score=0.8, cats=PASSED, day=8),
    DAN_LATE,
    submitted("acme", "d4", agent="dan", score=0.8, cats=PASSED, day=9),
    submitted("acme", "d5", agent="dan", score=0.3, cats=PASSED, day=10),
]


async def test_a_task_that_keeps_evidence_after_a_recheck_is_opened_by_the_firing_that_still_holds(schemas):
    in_order, late = await schemas("order", [IQS]), await schemas("late", [IQS])
    await one_by_one(in_order, DAN)
    await one_by_one(late, [e for e in DAN if e is not DAN_LATE] + [DAN_LATE])
    expected = await openings(in_order)
    [(status, rule, opened_at, due_at, _)] = expected.values()
    assert (status, rule, opened_at, due_at) == (
        "open",
        "iqs",
        T0 + timedelta(days=10),
        T0 + timedelta(days=17),
    )
    assert await openings(late) == expected
    assert await task_state(late) == await task_state(in_order)


# cy's day-9 drop is undone by a perfect review of day 8.5 that arrives right after it (the task it opened is
# dismissed); a week later cy's IQS falls again. Event order never opened the first task, so the second is the
# slot's first: a dismissal by the system must not take up the slot's next task id.
CY_LATE = submitted("acme", "c-late", agent="cy", score=1.0, cats=PASSED, day=8.5)
CY_BEFORE = [
    submitted("acme", "c1", agent="cy", score=0.95, cats=PASSED, day=0),
    submitted("acme", "c2", agent="cy", score=0.95, cats=PASSED, day=1),
    submitted("acme", "c3", agent="cy", score=0.8, cats=PASSED, day=8),
    submitted("acme", "c4", agent="cy", score=0.8, cats=PASSED, day=9),
]
CY_AFTER = [
    submitted("acme", "c5", agent="cy", score=0.95, cats=PASSED, day=15),
    submitted("acme", "c6", agent="cy", score=0.95, cats=PASSED, day=16),
    submitted("acme", "c7", agent="cy", score=0.3, cats=PASSED, day=22),
    submitted("acme", "c8", agent="cy", score=0.3, cats=PASSED, day=23),
]


async def test_a_task_the_recheck_dismissed_does_not_take_up_the_slot(schemas):
    in_order, late = await schemas("order", [IQS]), await schemas("late", [IQS])
    await one_by_one(in_order, [*CY_BEFORE[:3], CY_LATE, CY_BEFORE[3], *CY_AFTER])  # event order
    await one_by_one(late, CY_BEFORE)
    [first] = (await task_state(late)).values()
    assert first[0] == "open"
    await handle(late, CY_LATE)
    assert [v[0] for v in (await task_state(late)).values()] == ["dismissed"]
    await one_by_one(late, CY_AFTER)
    expected = await task_state(in_order)
    assert [v[:2] for v in expected.values()] == [("open", "cy")]
    assert await task_state(late) == expected
    assert await openings(late) == await openings(in_order)


# ann failed empathy on days 0, 1 and 2 (empathy-thrice fired on a3 citing all three); a2 is revised to a pass:
# no rule holds any more, so none of the task's evidence may stay, not only a2's.
ANN = [
    submitted("acme", "a1", score=0.9, cats=FAILED, day=0),
    submitted("acme", "a2", score=0.9, cats=FAILED, day=1),
    submitted("acme", "a3", score=0.9, cats=FAILED, day=2),
]


async def test_a_revision_that_removes_a_k_of_n_failure_withdraws_the_whole_case(schemas):
    rt = await schemas("revised", [EMPATHY_THRICE])
    await one_by_one(rt, ANN)
    [(status, _, _, evidence, _)] = (await task_state(rt)).values()
    assert (status, evidence) == ("open", ["a1", "a2", "a3"])
    await handle(rt, revised("acme", "a2", 1, score=1.0, cats=PASSED))
    assert live(await task_state(rt)) == {}
    [(status, _, _, evidence, _)] = (await task_state(rt)).values()
    assert (status, evidence) == ("dismissed", [])


async def test_a_revision_above_the_pass_mark_withdraws_its_task(schemas):
    below = Rule(rule_id="below-lifted", trigger="below_pass_mark", title="Below the mark")
    rt = await schemas("lifted", [below])
    await handle(rt, submitted("acme", "b1", agent="bob", score=0.5, day=0))
    assert [v[0] for v in (await task_state(rt)).values()] == ["open"]
    await handle(rt, revised("acme", "b1", 1, agent="bob", score=0.9, cats=PASSED))
    assert live(await task_state(rt)) == {}


# Under a rule that requires confirmation, a task is AutoQA-only (and waits for a lead) only while every firing
# that joined it is: a human review clears it whether it opened the task, took it over or joined it, and an
# AutoQA-only firing that takes over never sets it again. ann: human review first in event time, bob: AutoQA
# first; cy: AutoQA only.
def _confirm_stream() -> list[Envelope]:
    human = ReviewKind.manual
    return [
        submitted("acme", "a1", agent="ann", score=0.5, day=0, kind=human),
        submitted("acme", "a2", agent="ann", score=0.5, day=1),
        submitted("acme", "b1", agent="bob", score=0.5, day=0),
        submitted("acme", "b2", agent="bob", score=0.5, day=1, kind=human),
        submitted("acme", "c1", agent="cy", score=0.5, day=0),
        submitted("acme", "c2", agent="cy", score=0.5, day=1),
    ]


async def test_a_takeover_or_a_human_review_joining_decides_needs_confirmation_in_any_order(schemas):
    stream = _confirm_stream()
    in_order, reversed_ = await schemas("order", [CONFIRM]), await schemas("reversed", [CONFIRM])
    await one_by_one(in_order, stream)
    await one_by_one(reversed_, stream[::-1])
    state = await task_state(in_order)
    flags = {state[t][1]: v[4] for t, v in (await openings(in_order)).items()}
    assert flags == {"ann": False, "bob": False, "cy": True}
    assert await openings(reversed_) == await openings(in_order)
    # The system's clearing is published, as a lead's confirmation is.
    confirmed = {e.agent_id for e in await task_events(in_order) if isinstance(e, CoachingTaskConfirmed)}
    assert confirmed == {"bob"}


async def test_evidence_withdrawn_and_cited_again_is_stored_again(schemas):
    """The process remembers which evidence rows it stored, to send none twice; a withdrawal must make it forget."""
    twice = Rule(
        rule_id="empathy-twice-again",
        trigger="category_failures",
        category_id="empathy",
        k=2,
        window_days=7,
        title="t",
    )
    rt = await schemas("again", [twice])
    await one_by_one(rt, ANN)
    assert [v[3] for v in (await task_state(rt)).values()] == [["a1", "a2", "a3"]]
    await handle(rt, revised("acme", "a1", 1, score=1.0, cats=PASSED))  # a2 no longer fires; a3 still does
    assert [v[3] for v in (await task_state(rt)).values()] == [["a2", "a3"]]
    await handle(rt, revised("acme", "a1", 2, score=0.9, cats=FAILED))
    assert [v[3] for v in (await task_state(rt)).values()] == [["a1", "a2", "a3"]]
