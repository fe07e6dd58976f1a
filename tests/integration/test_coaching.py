"""Coaching on the real broker and database: reviews in → tasks through the API, signed webhooks out."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from qastream_shared.events import Role
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, eventually, produce_envelopes
from qastream_shared.topics import REVIEWS, ensure_topics, physical
from tests.integration.coaching_fixtures import Receiver, submitted

pytestmark = pytest.mark.integration

WEBHOOK_ENV = {
    "QA_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]',
    "QA_WEBHOOK_BACKOFF_BASE_S": "0.05",
    "QA_WEBHOOK_MAX_ATTEMPTS": "3",
    "QA_WEBHOOK_TIMEOUT_S": "60",
    "QA_WEBHOOK_POLL_S": "0.05",
}


def verify(secret: str, received: Any) -> bool:
    """Standard Webhooks verification, written from the spec here rather than reusing the service's code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = (
        f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}.".encode() + received.body
    )
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(s == f"v1,{expected}" for s in received.headers["webhook-signature"].split(" "))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
async def keys(settings) -> dict[str, str]:
    await ensure_topics(settings)
    return {
        "admin": await add_tenant(settings, "acme"),
        "lead": await add_tenant(settings, "acme", role=Role.team_lead, agent_id="lee", team="red"),
        "blue_lead": await add_tenant(settings, "acme", role=Role.team_lead, agent_id="bea", team="blue"),
        "ann": await add_tenant(settings, "acme", role=Role.agent, agent_id="ann", team="red"),
        "bob": await add_tenant(settings, "acme", role=Role.agent, agent_id="bob", team="red"),
        "reviewer": await add_tenant(settings, "acme", role=Role.reviewer, agent_id="rita"),
        "other": await add_tenant(settings, "beta"),
    }


@pytest.fixture
async def api(settings, spawn, keys) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    spawn(["-m", "qastream_coaching"], {"QA_HTTP_PORT": str(port), **WEBHOOK_ENV})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

        async def ready() -> bool:
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, within=90)

        async def keys_known() -> bool:
            return (await http.get("/v1/tasks", headers=auth(keys["other"]))).status_code == 200

        await eventually(keys_known, within=30)
        yield http


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_failing_review_becomes_a_task_in_the_api_and_a_signed_webhook(settings, api, keys, receiver):
    admin = auth(keys["admin"])
    r = await api.post(
        "/v1/rules",
        headers=admin,
        json={"rule_id": "below", "trigger": "below_pass_mark", "title": "Coach on the weakest category"},
    )
    assert r.status_code == 201, r.text
    hook = await api.post(
        "/v1/webhooks",
        headers=admin,
        json={
            "url": f"{receiver.base}/ok",
            "event_types": ["qa.coaching.task.created.v1", "qa.coaching.alert.raised.v1"],
        },
    )
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]

    await produce_envelopes(
        settings,
        physical(REVIEWS, settings),
        [
            submitted("acme", "r1", score=0.5, cats={"empathy": 0.25, "greeting": 1.0}, day=0),
            submitted("acme", "r2", score=0.6, cats={"empathy": 0.5, "greeting": 0.75}, day=1),
            submitted(
                "acme", "r3", score=0.0, cats={"compliance": 0.0, "greeting": 1.0}, day=2, auto_failed=True
            ),
        ],
    )

    async def two_tasks() -> list[dict[str, Any]]:
        items = (await api.get("/v1/tasks", headers=auth(keys["lead"]))).json()["items"]
        counts = [len(await evidence(t)) for t in items]
        return items if sorted(counts) == [1, 2] else []

    async def evidence(task: dict[str, Any]) -> list[dict[str, Any]]:
        return (await api.get(f"/v1/tasks/{task['task_id']}", headers=auth(keys["lead"]))).json()["evidence"]

    tasks = {t["category_id"]: t for t in await eventually(two_tasks, within=60)}
    empathy = tasks["empathy"]
    # Same agent and category: the second failing review joined the open task as evidence.
    assert [e["review_id"] for e in await evidence(empathy)] == ["r1", "r2"]
    assert empathy["agent_id"] == "ann" and empathy["assignee_id"] == "lee" and empathy["status"] == "open"
    assert (await evidence(empathy))[0]["review_link"] == "/v1/reviews/r1"

    async def webhooks_in() -> list[Any]:
        got = receiver.on("/ok")
        types = sorted(orjson.loads(g.body)["type"] for g in got)
        return (
            got
            if types.count("qa.coaching.task.created.v1") == 2 and "qa.coaching.alert.raised.v1" in types
            else []
        )

    got = await eventually(webhooks_in, within=60)
    assert all(verify(secret, g) for g in got)
    tampered = got[0]
    tampered.body = tampered.body.replace(b"ann", b"bob")
    assert not verify(secret, tampered)
    alert = next(
        orjson.loads(g.body) for g in got if orjson.loads(g.body)["type"] == "qa.coaching.alert.raised.v1"
    )
    assert alert["data"]["review_id"] == "r3" and alert["data"]["category_ids"] == ["compliance"]

    # The lifecycle through the API, with its roles.
    tid = empathy["task_id"]
    assert (await api.post(f"/v1/tasks/{tid}/acknowledge", headers=auth(keys["lead"]))).status_code == 403
    assert (await api.post(f"/v1/tasks/{tid}/acknowledge", headers=auth(keys["ann"]))).json()[
        "status"
    ] == "acknowledged"
    done = {"notes": "walked through empathy statements", "quiz_score": 0.8}
    assert (
        await api.post(f"/v1/tasks/{tid}/complete", headers=auth(keys["ann"]), json=done)
    ).status_code == 403
    r = await api.post(f"/v1/tasks/{tid}/complete", headers=auth(keys["lead"]), json=done)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    r = await api.post(f"/v1/tasks/{tid}/dismiss", headers=auth(keys["lead"]), json={"reason": "late"})
    assert r.status_code == 409 and "completed" in r.json()["detail"]

    # Reviews after completion update the impact as they come.
    later = datetime.now(UTC) + timedelta(minutes=1)
    await produce_envelopes(
        settings,
        physical(REVIEWS, settings),
        [
            submitted("acme", f"after-{i}", score=0.9, cats={"empathy": 1.0}, at=later + timedelta(hours=i))
            for i in range(3)
        ],
    )

    async def impact() -> Any:
        r = await api.get(f"/v1/tasks/{tid}/impact", headers=auth(keys["ann"]))
        return r.json() if r.status_code == 200 and r.json()["n_after"] == 3 else None

    measured = await eventually(impact, within=60)
    assert measured["n_before"] == 2 and measured["mean_before"] == pytest.approx(0.375)
    assert measured["difference"] == pytest.approx(0.625)
    by_lead = (await api.get("/v1/impact?by=assignee", headers=admin)).json()
    assert by_lead == [
        {
            "assignee": "lee",
            "tasks": 1,
            "mean_difference": pytest.approx(0.625),
            "ci_low": None,
            "ci_high": None,
        }
    ]


async def _hook(api: httpx.AsyncClient, key: str, url: str, types: list[str]) -> dict[str, Any]:
    r = await api.post("/v1/webhooks", headers=auth(key), json={"url": url, "event_types": types})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_retries_dead_letter_replay_and_a_hanging_receiver_blocks_no_one(settings, api, keys, receiver):
    created = ["qa.coaching.task.created.v1"]
    admin, other = keys["admin"], keys["other"]
    for key in (admin, other):
        r = await api.post(
            "/v1/rules",
            headers=auth(key),
            json={"rule_id": "below", "trigger": "below_pass_mark", "title": "t"},
        )
        assert r.status_code == 201
    flaky = await _hook(api, admin, f"{receiver.base}/flaky", created)
    # Another tenant's receiver hangs on every request (the service's timeout is 60 s).
    await _hook(api, other, f"{receiver.base}/hang", ["qa.review.submitted.v1"])
    fine = await _hook(api, other, f"{receiver.base}/ok", created)
    await produce_envelopes(
        settings,
        physical(REVIEWS, settings),
        [submitted("beta", f"b{i}", agent=f"agent-{i}", score=0.3) for i in range(8)]
        + [submitted("acme", "a1", score=0.3)],
    )

    async def fine_all_in() -> bool:
        return len(receiver.on("/ok")) == 8

    await eventually(fine_all_in, within=60)
    # Delivered while the hanging receiver still holds its requests: it slowed no one else.
    assert not receiver.release.is_set() and len(receiver.on("/hang")) >= 1
    assert all(verify(fine["secret"], g) for g in receiver.on("/ok"))

    async def dead() -> list[dict[str, Any]]:
        r = await api.get(
            f"/v1/webhook-deliveries?webhook_id={flaky['webhook_id']}&status=dead", headers=auth(admin)
        )
        return list(r.json()["items"])

    (delivery,) = await eventually(dead, within=60)
    # Three attempts (QA_WEBHOOK_MAX_ATTEMPTS), each failing with 500, each in the log; then dead.
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 500]
    assert delivery["attempts"] == 3 and delivery["last_error"] == "HTTP 500"
    assert len(receiver.on("/flaky")) == 3
    # Every attempt of one delivery carries the same webhook-id, so receivers can dedupe.
    assert len({g.headers["webhook-id"] for g in receiver.on("/flaky")}) == 1
    # The other tenant can neither see nor replay it.
    theirs = (await api.get("/v1/webhook-deliveries", headers=auth(other))).json()["items"]
    assert theirs and flaky["webhook_id"] not in {d["webhook_id"] for d in theirs}
    r = await api.post(
        "/v1/webhook-deliveries/replay", headers=auth(other), json={"delivery_ids": [delivery["delivery_id"]]}
    )
    assert r.json() == {"replayed": []}
    r = await api.post(
        "/v1/webhook-deliveries/replay", headers=auth(admin), json={"delivery_ids": [delivery["delivery_id"]]}
    )
    assert r.json() == {"replayed": [delivery["delivery_id"]]}

    async def delivered() -> list[dict[str, Any]]:
        r = await api.get(
            f"/v1/webhook-deliveries?webhook_id={flaky['webhook_id']}&status=delivered", headers=auth(admin)
        )
        return list(r.json()["items"])

    (done,) = await eventually(delivered, within=60)
    assert len(receiver.on("/flaky")) == 4 and verify(flaky["secret"], receiver.on("/flaky")[-1])
    assert [a["status_code"] for a in done["attempt_log"]] == [500, 500, 500, 204]


async def test_tenant_and_role_isolation_on_every_endpoint_and_bad_input(settings, api, keys, receiver):
    admin = auth(keys["admin"])
    rule = {"rule_id": "below", "trigger": "below_pass_mark", "title": "t", "alert": True}
    assert (await api.post("/v1/rules", headers=admin, json=rule)).status_code == 201
    hook = await _hook(api, keys["admin"], f"{receiver.base}/ok", ["qa.coaching.task.created.v1"])
    await produce_envelopes(settings, physical(REVIEWS, settings), [submitted("acme", "r1", score=0.3)])

    async def task() -> Any:
        items = (await api.get("/v1/tasks", headers=admin)).json()["items"]
        return items[0] if items else None

    tid = (await eventually(task, within=60))["task_id"]
    rid, wid = "below", hook["webhook_id"]
    reads = [
        f"/v1/tasks/{tid}",
        f"/v1/tasks/{tid}/impact",
        f"/v1/rules/{rid}",
        f"/v1/rules/{rid}/versions/1",
        f"/v1/webhooks/{wid}",
    ]
    other = auth(keys["other"])
    # Another tenant's admin: nothing of acme is listed, readable or changeable.
    for path in ("/v1/tasks", "/v1/alerts", "/v1/webhooks", "/v1/webhook-deliveries"):
        r = await api.get(path, headers=other)
        assert r.status_code == 200 and r.json()["items"] == [], path
    assert (await api.get("/v1/rules", headers=other)).json() == []
    assert (await api.get("/v1/impact", headers=other)).json() == []
    for path in reads:
        assert (await api.get(path, headers=other)).status_code == 404, path
    for action, body in (
        ("confirm", None),
        ("acknowledge", None),
        ("complete", {"notes": "x"}),
        ("dismiss", {"reason": "x"}),
    ):
        assert (await api.post(f"/v1/tasks/{tid}/{action}", headers=other, json=body)).status_code in (
            403,
            404,
        )
    assert (await api.put(f"/v1/rules/{rid}", headers=other, json={"k": 2})).status_code == 404
    assert (await api.delete(f"/v1/rules/{rid}", headers=other)).status_code == 404
    assert (await api.patch(f"/v1/webhooks/{wid}", headers=other, json={"active": False})).status_code == 404
    assert (await api.delete(f"/v1/webhooks/{wid}", headers=other)).status_code == 404
    # Roles: bob (same team, another agent) and the blue team's lead do not see ann's task.
    for who in ("bob", "blue_lead"):
        assert (await api.get("/v1/tasks", headers=auth(keys[who]))).json()["items"] == [], who
        assert (await api.get(f"/v1/tasks/{tid}", headers=auth(keys[who]))).status_code == 404, who
        assert (
            await api.post(f"/v1/tasks/{tid}/dismiss", headers=auth(keys[who]), json={"reason": "x"})
        ).status_code in (403, 404)
    assert [
        t["task_id"] for t in (await api.get("/v1/tasks", headers=auth(keys["ann"]))).json()["items"]
    ] == [tid]
    assert [
        t["task_id"]
        for t in (await api.get("/v1/tasks?team=red", headers=auth(keys["lead"]))).json()["items"]
    ] == [tid]
    assert [
        a["agent_id"] for a in (await api.get("/v1/alerts", headers=auth(keys["ann"]))).json()["items"]
    ] == ["ann"]
    assert (await api.get("/v1/alerts", headers=auth(keys["bob"]))).json()["items"] == []
    # Only admins and QA leads manage rules and webhooks; agents and reviewers read neither.
    for who in ("ann", "lead", "reviewer"):
        h = auth(keys[who])
        assert (await api.post("/v1/rules", headers=h, json={**rule, "rule_id": "x"})).status_code == 403, who
        assert (await api.put(f"/v1/rules/{rid}", headers=h, json={"k": 2})).status_code == 403, who
        assert (await api.get("/v1/webhooks", headers=h)).status_code == 403, who
        assert (await api.get("/v1/webhook-deliveries", headers=h)).status_code == 403, who
        assert (
            await api.post(
                "/v1/webhooks",
                headers=h,
                json={"url": f"{receiver.base}/ok", "event_types": ["qa.coaching.alert.raised.v1"]},
            )
        ).status_code == 403
    for who in ("ann", "reviewer"):
        assert (await api.get("/v1/rules", headers=auth(keys[who]))).status_code == 403, who
        assert (await api.get("/v1/impact", headers=auth(keys[who]))).status_code == 403, who
    assert (await api.get("/v1/tasks", headers=auth(keys["reviewer"]))).status_code == 403
    assert (await api.get("/v1/tasks")).status_code == 401

    # Bad input: 422 naming the field; 409 for an illegal transition.
    for bad, field in (
        ({"rule_id": "k0", "trigger": "category_failures", "title": "t", "k": 0}, "k"),
        ({"rule_id": "w", "trigger": "category_failures", "title": "t", "window_days": "2w"}, "window_days"),
        (
            {"rule_id": "c", "trigger": "category_failures", "title": "t", "category_id": "telepathy"},
            "category_id",
        ),
    ):
        r = await api.post("/v1/rules", headers=admin, json=bad)
        assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == [field], r.text
    r = await api.put(f"/v1/rules/{rid}", headers=admin, json={"k": -1})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "k"
    for url in (
        "ftp://example.com/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest",
        "not a url",
    ):
        r = await api.post(
            "/v1/webhooks", headers=admin, json={"url": url, "event_types": ["qa.coaching.alert.raised.v1"]}
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "url", url
    r = await api.post(
        "/v1/webhooks", headers=admin, json={"url": f"{receiver.base}/ok", "event_types": ["qa.nope.v1"]}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "event_types"
    assert (
        await api.post(f"/v1/tasks/{tid}/dismiss", headers=admin, json={"reason": "not needed"})
    ).status_code == 200
    r = await api.post(f"/v1/tasks/{tid}/complete", headers=admin, json={"notes": "x"})
    assert r.status_code == 409
    # An edit is version 2; version 1 stays readable.
    assert (await api.put(f"/v1/rules/{rid}", headers=admin, json={"title": "new"})).json()["version"] == 2
    assert (await api.get(f"/v1/rules/{rid}/versions/1", headers=admin)).json()["title"] == "t"
