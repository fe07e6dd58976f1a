"""The human review lifecycle on the real broker and database, through a real scoring process that is
SIGKILLed twice along the way: sample → assignment → manual review → dispute → accepted → ReviewRevised,
each event on its topic exactly once."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from qastream_scoring.app import SPEC
from qastream_scoring.tables import assignments, tables
from qastream_shared.events import (
    AssignmentAction,
    AssignmentChanged,
    DisputeOpened,
    DisputeResolved,
    Purpose,
    ReviewKind,
    ReviewRevised,
    ReviewSubmitted,
    Role,
    decode,
)
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.stack import free_port
from qastream_shared.testing import conversation, eventually, read_topic
from qastream_shared.topics import ASSIGNMENTS, DISPUTES, REVIEWS, ensure_topics, physical
from tests.integration.review_workflow import issue_keys, items, produce_samples, sample, wait_for_key

pytestmark = pytest.mark.integration


async def test_lifecycle_each_event_once_across_sigkills(settings, spawn):
    await ensure_topics(settings)
    keys = await issue_keys(
        settings,
        "acme",
        {
            "admin": (Role.admin, {}),
            "lead": (Role.qa_lead, {"agent_id": "lead-1"}),
            "rev": (Role.reviewer, {"agent_id": "rev-1"}),
            "agent": (Role.agent, {"agent_id": "agent-7"}),
        },
    )
    port = free_port()
    env = {"QA_HTTP_PORT": str(port)}
    runtime = ServiceRuntime(SPEC, settings)

    async def drained() -> bool:
        """Every committed event is on Kafka, so a SIGKILL now cannot make the relay send one twice."""
        async with runtime.sessions() as s:
            outbox = tables["outbox"]
            pending = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            return int((await s.execute(pending)).scalar_one()) == 0

    proc = spawn(["-m", "qastream_scoring"], env)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        await wait_for_key(http, keys.auth("admin"))
        pool = {"reviewers": [{"reviewer_id": "rev-1"}, {"reviewer_id": "agent-7"}]}
        assert (await http.put("/v1/reviewers", json=pool, headers=keys.auth("admin"))).status_code == 200
        conv = conversation("conv-1", agent="agent-7")
        await produce_samples(
            settings, [sample("acme", conv, Purpose.auto), sample("acme", conv, Purpose.manual)]
        )

        async def assigned() -> bool:
            async with runtime.sessions() as s:
                return (await s.execute(select(func.count()).select_from(assignments))).scalar_one() == 1

        await eventually(assigned, within=60)
        await eventually(drained, within=30)
        proc.kill()  # the sample's offset may not be committed yet: it is redelivered to the next process
        proc = spawn(["-m", "qastream_scoring"], env)
        await wait_for_key(http, keys.auth("admin"))

        # agent-7 handled the conversation, so the split gave it to rev-1.
        nxt = await http.get("/v1/assignments/next", headers=keys.auth("rev"))
        assert nxt.status_code == 200, nxt.text
        aid = nxt.json()["assignment_id"]
        assert nxt.json()["reviewer_id"] == "rev-1"
        opened = (await http.get(f"/v1/assignments/{aid}", headers=keys.auth("rev"))).json()
        assert opened["conversation"]["conversation_id"] == "conv-1"
        assert opened["auto_ratings"] and all("provenance" in r for r in opened["auto_ratings"])
        cats = [c for g in opened["scorecard"]["groups"] for c in g["categories"]]
        ratings = [{"category_id": c["category_id"], "value": c_max(c)} for c in cats]
        draft = {"ratings": ratings[:2], "comments": [{"turn": 1, "text": "good opening"}]}
        assert (
            await http.put(f"/v1/assignments/{aid}/draft", json=draft, headers=keys.auth("rev"))
        ).status_code == 200
        body = {"ratings": ratings, "comments": [{"text": "solid"}]}
        headers = {**keys.auth("rev"), "Idempotency-Key": "submit-1"}
        first = await http.post(f"/v1/assignments/{aid}/review", json=body, headers=headers)
        assert first.status_code == 201, first.text
        again = await http.post(f"/v1/assignments/{aid}/review", json=body, headers=headers)
        assert again.status_code == 200 and again.json()["review_id"] == first.json()["review_id"]
        rid = first.json()["review_id"]

        await eventually(drained, within=30)
        proc.kill()
        proc = spawn(["-m", "qastream_scoring"], env)
        await wait_for_key(http, keys.auth("admin"))
        # A retry after the crash still finds the first review.
        retried = await http.post(f"/v1/assignments/{aid}/review", json=body, headers=keys.auth("rev"))
        assert retried.status_code == 200 and retried.json()["review_id"] == rid

        disputed = cats[0]["category_id"]
        d = await http.post(
            f"/v1/reviews/{rid}/disputes",
            json={"category_id": disputed, "reason": "I did greet"},
            headers=keys.auth("agent"),
        )
        assert d.status_code == 201, d.text
        did = d.json()["dispute_id"]
        lower = {"category_id": disputed, "value": c_min(cats[0])}
        r = await http.post(
            f"/v1/disputes/{did}/resolve",
            json={"outcome": "accepted", "comment": "agreed", "ratings": [lower]},
            headers=keys.auth("lead"),
        )
        assert r.status_code == 200, r.text
        assert r.json()["revision"] == 2
        history = (await http.get(f"/v1/reviews/{rid}/history", headers=keys.auth("agent"))).json()
        assert [v["revision"] for v in history["versions"]] == [1, 2]
        assert history["versions"][0]["review"]["ratings"][0]["value"] == c_max(
            cats[0]
        )  # the old one is kept
        assert history["versions"][1]["review"]["ratings"][0]["value"] == c_min(cats[0])
        assert [x["status"] for x in history["disputes"]] == ["accepted"]
        assert items(
            await http.get("/v1/reviews", params={"conversation_id": "conv-1"}, headers=keys.auth("agent"))
        )

    def decoded(records):
        return [decode(x.key, x.value, x.headers) for x in records]

    on_assignments = decoded(await read_topic(settings, physical(ASSIGNMENTS, settings), expect=2, within=60))
    on_reviews = decoded(await read_topic(settings, physical(REVIEWS, settings), expect=3, within=60))
    on_disputes = decoded(await read_topic(settings, physical(DISPUTES, settings), expect=2, within=60))
    await runtime.engine.dispose()
    assert Counter(e.data.action for e in on_assignments if isinstance(e.data, AssignmentChanged)) == {
        AssignmentAction.created: 1,
        AssignmentAction.completed: 1,
    }
    assert len(on_assignments) == 2
    # Each carries the conversation's agent and team, so reporting need not join the conversation.
    assert {(e.data.agent_id, e.data.team) for e in on_assignments} == {("agent-7", conv.team)}
    manual = [
        e.data for e in on_reviews if isinstance(e.data, ReviewSubmitted) and e.data.kind is ReviewKind.manual
    ]
    assert len(manual) == 1 and manual[0].assignment_id == aid and manual[0].reviewer_id == "rev-1"
    assert manual[0].time_spent_s is not None and manual[0].comments[0].text == "solid"
    revised = [e.data for e in on_reviews if isinstance(e.data, ReviewRevised)]
    assert len(revised) == 1 and revised[0].revision == 2 and revised[0].dispute_id == did
    assert revised[0].ratings[0].value == c_min(cats[0]) and revised[0].agent_id == "agent-7"
    assert len(on_reviews) == 3  # the AutoQA review, the manual one, its revision
    assert [type(e.data) for e in on_disputes] == [DisputeOpened, DisputeResolved]


def c_max(cat: dict) -> int:
    scale = cat["scale"]
    return {"binary": 1, "3-point": 3, "4-point": 4, "5-point": 5}.get(
        scale["kind"], scale.get("max_points") or 0
    )


def c_min(cat: dict) -> int:
    return 1 if cat["scale"]["kind"].endswith("-point") else 0
