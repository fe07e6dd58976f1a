"""Coaching's consumer on the real broker and database: revisions leave no stale task, redelivery and a
replay from offset 0 give the same tasks, and bad records go to qa.dlq.coaching with their reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from qastream_coaching import fact_store
from qastream_coaching.rules import Rule
from qastream_shared.db import drop_schema
from qastream_shared.events import DisputeOpened, Envelope, decode
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import add_tenant, eventually, produce, produce_envelopes, read_topic
from qastream_shared.topics import COACHING, DISPUTES, REVIEWS, dlq, ensure_topics, physical
from tests.integration.coaching_fixtures import live, rejected, revised, submitted, task_state, with_rules

pytestmark = pytest.mark.integration

RULES = [
    Rule(rule_id="below", trigger="below_pass_mark", title="Below the pass mark"),
    Rule(
        rule_id="empathy-twice",
        trigger="category_failures",
        category_id="empathy",
        k=2,
        window_days=7,
        title="t",
    ),
    Rule(rule_id="disputes", trigger="dispute_rejections", title="Disputes rejected twice"),
]


async def started(settings: Settings) -> ServiceRuntime:
    """A coaching runtime whose rules exist before its consumer reads the first event."""
    rt = await with_rules(settings, RULES)
    await rt.start()
    return rt


@pytest.fixture
async def coaching(settings: Settings) -> AsyncIterator[ServiceRuntime]:
    await ensure_topics(settings)
    await add_tenant(settings, "acme")
    rt = await started(settings)
    yield rt
    await rt.stop()


async def test_revisions_redelivery_and_replay(settings, coaching):
    reviews = physical(REVIEWS, settings)
    first = [
        submitted("acme", "x1", agent="ann", score=0.5, cats={"empathy": 0.25}, day=0),
        submitted("acme", "y1", agent="bob", score=0.5, cats={"empathy": 0.25}, day=0),
        submitted("acme", "y2", agent="bob", score=0.6, cats={"empathy": 0.4, "tone": 0.5}, day=1),
        submitted("acme", "z1", agent="cy", score=0.9, cats={"empathy": 1.0}, day=0),
        rejected("acme", "d1", "z1", category="empathy", agent="cy", day=1),
        rejected("acme", "d2", "z1", category="tone", agent="cy", day=2),
        rejected("acme", "d3", "z1", category="empathy", agent="cy", day=3),
    ]
    await produce_envelopes(settings, reviews, [e for e in first if e.type.startswith("qa.review")])
    await produce_envelopes(
        settings, physical(DISPUTES, settings), [e for e in first if e.type.startswith("qa.dispute")]
    )

    async def opened() -> dict[str, Any]:
        s = await task_state(coaching)
        return s if len(s) == 3 and ["y1", "y2"] in [v[3] for v in s.values()] else {}

    before = await eventually(opened, within=60)
    by = {(v[1], v[2]): (k, v) for k, v in before.items()}
    assert by[("ann", "empathy")][1] == ("open", "ann", "empathy", ["x1"], "below")
    # Below the mark twice (empathy weakest) and empathy failed twice: one task with both, not three.
    assert by[("bob", "empathy")][1] == ("open", "bob", "empathy", ["y1", "y2"], "below")
    # Two disputes on empathy rejected within the window; the one on tone does not count.
    assert by[("cy", "empathy")][1] == ("open", "cy", "empathy", ["z1"], "disputes")

    # Revisions lift x1 and y1 above the mark: ann's task had only x1 and is dismissed; bob's keeps y2 and
    # loses y1. No open task is left resting on a score that no longer stands.
    await produce_envelopes(
        settings,
        reviews,
        [
            revised("acme", "x1", 1, agent="ann", score=0.9, cats={"empathy": 1.0}),
            revised("acme", "y1", 1, agent="bob", score=0.95, cats={"empathy": 1.0}),
        ],
    )
    ann_task, bob_task = by[("ann", "empathy")][0], by[("bob", "empathy")][0]

    async def withdrawn() -> dict[str, Any]:
        s = await task_state(coaching)
        return s if s[ann_task][0] == "dismissed" and s[bob_task][3] == ["y2"] else {}

    after = await eventually(withdrawn, within=60)
    assert after[ann_task] == ("dismissed", "ann", "empathy", [], "below")
    assert after[bob_task] == ("open", "bob", "empathy", ["y2"], "below")
    coaching_topic = physical(COACHING, settings)
    published = [
        decode(r.key, r.value, r.headers) for r in await read_topic(settings, coaching_topic, expect=5)
    ]
    kinds = [e.type.split(".")[-2] for e in published]
    assert (kinds.count("created"), kinds.count("dismissed"), kinds.count("evidence_withdrawn")) == (3, 1, 1)

    # Redelivery of the same records, and the same reviews republished under new event ids: no change.
    await produce_envelopes(settings, reviews, first[:4])
    await produce_envelopes(
        settings, reviews, [Envelope(e.data, e.source, e.tenant, e.key) for e in first[:4]]
    )
    marker = submitted("acme", "m1", agent="dee", score=0.95, cats={"empathy": 1.0})
    await produce_envelopes(settings, reviews, [marker])

    async def consumed_marker() -> bool:
        async with coaching.sessions() as s:
            return bool(await fact_store.review_times(s, "acme", ["m1"]))

    await eventually(consumed_marker, within=60)
    assert await task_state(coaching) == after
    assert len(await read_topic(settings, coaching_topic, expect=len(published), within=5)) == len(published)

    # A replay from offset 0 into a fresh schema gives the same live tasks, with the same ids.
    replay = await started(settings.model_copy(update={"db_schema": settings.db_schema + "_replay"}))
    try:

        async def replayed() -> dict[str, Any]:
            async with replay.sessions() as s:
                done = bool(await fact_store.review_times(s, "acme", ["m1"]))
            return live(await task_state(replay)) if done else {}

        assert await eventually(replayed, within=60) == live(after)
    finally:
        await replay.stop()
        await drop_schema(replay.engine, replay.schema)


async def test_malformed_and_unknown_events_are_dead_lettered_with_their_reason(settings, coaching):
    reviews = physical(REVIEWS, settings)
    wrong_topic = Envelope(
        data=DisputeOpened(
            dispute_id="d",
            review_id="r",
            conversation_id="c",
            opened_by="ann",
            reason="unfair",
            opened_at=datetime.now(UTC),
        ),
        source="scoring",
        tenant="acme",
        key="acme:c",
    )
    await produce(settings, reviews, [(b"acme:x", b"not json", [("ce_type", b"qa.review.submitted.v1")])])
    await produce_envelopes(settings, reviews, [wrong_topic, submitted("nobody", "r9")])
    records = await read_topic(settings, physical(dlq("coaching"), settings), expect=3)
    reasons = sorted(dict(r.headers)["dlq_reason"].decode() for r in records)
    assert len(reasons) == 3
    assert any("invalid CloudEvent" in r or "schema violation" in r for r in reasons)
    assert any("does not belong on qa.reviews" in r for r in reasons)
    assert any("unknown tenant 'nobody'" in r for r in reasons)
    # The partition kept flowing: a good review behind them is handled.
    await produce_envelopes(settings, reviews, [submitted("acme", "ok1", score=0.3)])

    async def handled() -> bool:
        return any(v[3] == ["ok1"] for v in (await task_state(coaching)).values())

    await eventually(handled, within=60)
