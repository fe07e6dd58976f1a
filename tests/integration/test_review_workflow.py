"""The review workflow's API on the real broker and database (the app in this process, over ASGI):
bad input stores nothing, 20 concurrent `next` callers, a calibration session computed by hand."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from qastream_scoring.app import SPEC
from qastream_scoring.tables import (
    assignment_log,
    assignments,
    calibration_reviews,
    calibration_sessions,
    disputes,
    review_versions,
    reviews,
    tables,
)
from qastream_shared.events import Purpose, Role
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import conversation, eventually
from qastream_shared.topics import ensure_topics
from tests.integration.review_workflow import (
    Keys,
    in_process,
    issue_keys,
    items,
    produce_samples,
    sample,
    wait_for_key,
)

pytestmark = pytest.mark.integration


async def count(settings: Settings, table: Any) -> int:
    runtime = ServiceRuntime(SPEC, settings)
    try:
        async with runtime.sessions() as s:
            return int((await s.execute(select(func.count()).select_from(table))).scalar_one())
    finally:
        await runtime.engine.dispose()


async def stored(settings: Settings) -> dict[str, int]:
    """Rows of every table a rejected request could have written to."""
    names = (reviews, review_versions, disputes, assignment_log, calibration_reviews, calibration_sessions)
    out = {t.name: await count(settings, t) for t in names}
    out["outbox"] = await count(settings, tables["outbox"])
    return out


async def assignments_of(http: httpx.AsyncClient, keys: Keys, n: int) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]] | None:
        found = items(await http.get("/v1/assignments", params={"limit": 500}, headers=keys.auth("admin")))
        return found if len(found) == n else None

    found = await eventually(listed, within=60)
    assert found is not None
    return found


def card_body(version_note: str = "calib") -> dict[str, Any]:
    return {
        "scorecard_id": "calib",
        "version": 1,
        "name": version_note,
        "groups": [
            {
                "group_id": "g",
                "name": "g",
                "categories": [
                    {
                        "category_id": "ok",
                        "name": "Solved",
                        "weight": 50,
                        "scale": {"kind": "binary"},
                        "allow_na": True,
                    },
                    {
                        "category_id": "tone",
                        "name": "Tone",
                        "weight": 50,
                        "scale": {"kind": "3-point"},
                        "root_cause_tags": ["rude"],
                    },
                ],
            }
        ],
    }


async def test_bad_input_is_refused_naming_the_field_and_stores_nothing(settings):
    await ensure_topics(settings)
    keys = await issue_keys(
        settings,
        "acme",
        {
            "admin": (Role.admin, {"agent_id": "adm"}),
            "lead": (Role.qa_lead, {"agent_id": "lead-1"}),
            "rev": (Role.reviewer, {"agent_id": "rev-1"}),
            "agent": (Role.agent, {"agent_id": "agent-1"}),
            "other": (Role.agent, {"agent_id": "agent-2"}),
        },
    )
    async with in_process(settings) as http:
        await wait_for_key(http, keys.auth("admin"))
        lead = keys.auth("lead")
        assert (await http.put("/v1/scorecards/calib", json=card_body(), headers=lead)).status_code == 200
        body = {"settings": {}, "active_scorecard_id": "calib"}
        assert (await http.put("/v1/scoring-settings", json=body, headers=lead)).status_code == 200
        assert (
            await http.put("/v1/reviewers", json={"reviewers": [{"reviewer_id": "rev-1"}]}, headers=lead)
        ).status_code == 200
        convs = [conversation(f"c{i}", agent="agent-1") for i in range(2)]
        await produce_samples(settings, [sample("acme", c, Purpose.manual) for c in convs])
        aid = (await assignments_of(http, keys, 2))[0]["assignment_id"]
        rev = keys.auth("rev")

        async def refused(method: str, path: str, status: int, field: str | None, **kw: Any) -> None:
            before = await stored(settings)
            r = await http.request(method, path, **kw)
            assert r.status_code == status, r.text
            if field is not None:
                assert [e["field"] for e in r.json()["errors"]] == [field], r.text
            assert await stored(settings) == before  # nothing stored, nothing published

        good = [{"category_id": "ok", "value": 1}, {"category_id": "tone", "value": 3}]
        submit = f"/v1/assignments/{aid}/review"
        unknown = [{"category_id": "greeting", "value": 1}, *good]
        await refused("POST", submit, 422, "ratings[0].category_id", json={"ratings": unknown}, headers=rev)
        outside = [{"category_id": "ok", "value": 1}, {"category_id": "tone", "value": 4}]
        await refused("POST", submit, 422, "ratings[1].value", json={"ratings": outside}, headers=rev)
        na = [{"category_id": "ok", "value": 1}, {"category_id": "tone", "value": None}]
        await refused("POST", submit, 422, "ratings[1].value", json={"ratings": na}, headers=rev)
        cause = [
            {"category_id": "ok", "value": 1},
            {"category_id": "tone", "value": 3, "root_causes": ["rude"]},
        ]
        await refused("POST", submit, 422, "ratings[1].root_causes", json={"ratings": cause}, headers=rev)
        await refused("POST", submit, 422, "ratings", json={"ratings": good[:1]}, headers=rev)
        await refused(
            "PUT",
            f"/v1/assignments/{aid}/draft",
            422,
            "ratings[0].value",
            json={"ratings": outside[1:]},
            headers=rev,
        )
        # N/A where the category allows it is fine.
        ok_na = [
            {"category_id": "ok", "value": None},
            {"category_id": "tone", "value": 1, "root_causes": ["rude"]},
        ]
        r = await http.post(submit, json={"ratings": ok_na}, headers=rev)
        assert r.status_code == 201, r.text
        rid = r.json()["review_id"]

        # Disputes: someone else's review, a category not on the card, a second open one, a resolved one.
        path = f"/v1/reviews/{rid}/disputes"
        await refused("POST", path, 404, None, json={"reason": "not mine"}, headers=keys.auth("other"))
        await refused(
            "POST",
            path,
            422,
            "category_id",
            json={"category_id": "nope", "reason": "x"},
            headers=keys.auth("agent"),
        )
        d = await http.post(
            path, json={"category_id": "tone", "reason": "was kind"}, headers=keys.auth("agent")
        )
        assert d.status_code == 201
        await refused(
            "POST",
            path,
            409,
            None,
            json={"category_id": "tone", "reason": "again"},
            headers=keys.auth("agent"),
        )
        whole = await http.post(path, json={"reason": "all of it"}, headers=keys.auth("agent"))
        assert whole.status_code == 201  # the whole review is another subject than one category
        resolve = f"/v1/disputes/{d.json()['dispute_id']}/resolve"
        await refused(
            "POST",
            resolve,
            422,
            "ratings[0].category_id",
            json={"outcome": "accepted", "ratings": [{"category_id": "ok", "value": 0}]},
            headers=lead,
        )
        await refused(
            "POST",
            resolve,
            422,
            "ratings[0].value",
            json={"outcome": "accepted", "ratings": [{"category_id": "tone", "value": 9}]},
            headers=lead,
        )
        await refused("POST", resolve, 422, "comment", json={"outcome": "rejected"}, headers=lead)
        assert (
            await http.post(resolve, json={"outcome": "rejected", "comment": "scored right"}, headers=lead)
        ).status_code == 200
        await refused(
            "POST", resolve, 409, None, json={"outcome": "rejected", "comment": "again"}, headers=lead
        )
        await refused(
            "POST",
            resolve,
            409,
            None,
            json={"outcome": "accepted", "ratings": [{"category_id": "tone", "value": 3}]},
            headers=lead,
        )

        # Calibration: past the deadline, a conversation outside the session, unknown conversations.
        deadline = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        session = {
            "conversation_ids": ["c0", "c1"],
            "participants": ["rev-1", "lead-1"],
            "deadline": deadline,
        }
        await refused(
            "POST",
            "/v1/calibrations",
            422,
            "conversation_ids[1]",
            json={**session, "conversation_ids": ["c0", "zz"]},
            headers=lead,
        )
        await refused(
            "POST",
            "/v1/calibrations",
            422,
            "benchmark_reviewer_id",
            json={**session, "benchmark_reviewer_id": "x"},
            headers=lead,
        )
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        await refused(
            "POST", "/v1/calibrations", 422, "deadline", json={**session, "deadline": past}, headers=lead
        )
        s = await http.post("/v1/calibrations", json=session, headers=lead)
        assert s.status_code == 201, s.text
        sid = s.json()["session_id"]
        rate = f"/v1/calibrations/{sid}/reviews"
        await refused(
            "POST", rate, 422, "conversation_id", json={"conversation_id": "c9", "ratings": good}, headers=rev
        )
        await refused(
            "POST",
            rate,
            422,
            "ratings[1].value",
            json={"conversation_id": "c0", "ratings": outside},
            headers=rev,
        )
        runtime = ServiceRuntime(SPEC, settings)
        async with runtime.sessions() as db, db.begin():
            await db.execute(
                update(calibration_sessions).values(deadline=datetime.now(UTC) - timedelta(seconds=1))
            )
        await runtime.engine.dispose()
        late = await http.post(rate, json={"conversation_id": "c0", "ratings": good}, headers=rev)
        assert late.status_code == 409 and "deadline" in late.json()["detail"]
        assert await count(settings, calibration_reviews) == 0


async def test_twenty_concurrent_next_callers_never_share_an_assignment(settings):
    await ensure_topics(settings)
    people: dict[str, tuple[Role, dict[str, str]]] = {"admin": (Role.admin, {})}
    people.update({f"r{i}": (Role.reviewer, {"agent_id": f"rev-{i}"}) for i in range(20)})
    keys = await issue_keys(settings, "acme", people)
    async with in_process(settings) as http:
        await wait_for_key(http, keys.auth("r19"))
        # No reviewer pool: every sample waits in the unassigned pool.
        convs = [conversation(f"c{i:02}", agent="agent-1") for i in range(30)]
        await produce_samples(settings, [sample("acme", c, Purpose.manual) for c in convs])
        await assignments_of(http, keys, 30)
        for _ in range(2):  # the second round: each caller gets their own claim back, no one a new one
            answers = await asyncio.gather(
                *(http.get("/v1/assignments/next", headers=keys.auth(f"r{i}")) for i in range(20))
            )
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
            claimed = {a.json()["assignment_id"]: a.json()["reviewer_id"] for a in answers}
            assert len(claimed) == 20
            assert sorted(claimed.values()) == sorted(f"rev-{i}" for i in range(20))
    runtime = ServiceRuntime(SPEC, settings)
    async with runtime.sessions() as s:
        owners = dict((await s.execute(select(assignments.c.assignment_id, assignments.c.reviewer_id))).all())
        claims = (
            await s.execute(select(func.count()).where(assignment_log.c.action == "reassigned"))
        ).scalar_one()
    await runtime.engine.dispose()
    assert sum(1 for o in owners.values() if o is not None) == 20 and claims == 20
    assert set(Counter(o for o in owners.values() if o).values()) == {1}


async def test_split_honours_quotas_self_review_team_leads_and_blind_mode(settings):
    await ensure_topics(settings)
    keys = await issue_keys(
        settings,
        "acme",
        {
            "admin": (Role.admin, {"agent_id": "adm"}),
            "ann": (Role.reviewer, {"agent_id": "ann"}),
            "lee": (Role.team_lead, {"agent_id": "lee", "team": "team-a"}),
            "agent": (Role.agent, {"agent_id": "agent-1"}),
        },
    )
    async with in_process(settings) as http:
        await wait_for_key(http, keys.auth("admin"))
        pool = {
            "reviewers": [
                {"reviewer_id": "ann", "daily_quota": 2},
                {"reviewer_id": "bob", "weekly_quota": 2},
                {"reviewer_id": "lee", "leads_team": "team-a"},
                {"reviewer_id": "agent-1", "weight": 5},
            ],
            "skip_team_lead": True,
            "blind": True,
        }
        assert (await http.put("/v1/reviewers", json=pool, headers=keys.auth("admin"))).status_code == 200
        day = datetime(2026, 3, 4, 10, tzinfo=UTC)
        convs = [conversation(f"c{i}", agent="agent-1") for i in range(6)]  # team-a, handled by agent-1
        await produce_samples(settings, [sample("acme", c, Purpose.manual, at=day) for c in convs])
        found = await assignments_of(http, keys, 6)
        held = Counter(a["reviewer_id"] for a in found)
        # agent-1 handled them all and lee leads their team: ann and bob fill their quotas, the rest wait.
        assert held == {"ann": 2, "bob": 2, None: 2}
        # A replay of the same samples (new event ids) makes no second assignment.
        await produce_samples(settings, [sample("acme", c, Purpose.manual, at=day) for c in convs])
        await produce_samples(
            settings, [sample("acme", conversation("c9", agent="agent-1"), Purpose.manual, at=day)]
        )
        again = await assignments_of(http, keys, 7)
        assert {a["assignment_id"]: a["reviewer_id"] for a in again if a["conversation_id"] != "c9"} == {
            a["assignment_id"]: a["reviewer_id"] for a in found
        }
        # Blind: ann (a reviewer) never sees the agent; the admin does.
        mine = items(await http.get("/v1/assignments", headers=keys.auth("ann")))
        assert len(mine) == 2 and all("agent_id" not in a and "team" not in a for a in mine)
        opened = (
            await http.get(f"/v1/assignments/{mine[0]['assignment_id']}", headers=keys.auth("ann"))
        ).json()
        assert "agent_ids" not in opened["conversation"] and "team" not in opened["conversation"]
        assert (
            items(await http.get("/v1/assignments", headers=keys.auth("admin")))[0]["agent_id"] == "agent-1"
        )
        # lee leads team-a, so the pool's two are not his to claim; ann gets her own first.
        assert (await http.get("/v1/assignments/next", headers=keys.auth("lee"))).status_code == 204
        nxt = (await http.get("/v1/assignments/next", headers=keys.auth("ann"))).json()
        assert nxt["reviewer_id"] == "ann" and "agent_id" not in nxt
        # A reassignment to someone who may not review it is refused, naming the field.
        r = await http.post(
            f"/v1/assignments/{nxt['assignment_id']}/reassign",
            json={"reviewer_id": "agent-1", "reason": "x"},
            headers=keys.auth("admin"),
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reviewer_id"
        # Blind holds for ann's own review and the disputes of it: no agent, no disputer.
        cats = [c for g in opened["scorecard"]["groups"] for c in g["categories"]]
        rating = [{"category_id": c["category_id"], "value": 1} for c in cats]
        aid = nxt["assignment_id"]
        rid = (
            await http.post(
                f"/v1/assignments/{aid}/review", json={"ratings": rating}, headers=keys.auth("ann")
            )
        ).json()["review_id"]
        d = await http.post(f"/v1/reviews/{rid}/disputes", json={"reason": "no"}, headers=keys.auth("agent"))
        assert d.status_code == 201 and d.json()["opened_by"] == "agent-1"
        for view in (
            (await http.get(f"/v1/reviews/{rid}", headers=keys.auth("ann"))).json(),
            *items(await http.get("/v1/disputes", headers=keys.auth("ann"))),
            (await http.get(f"/v1/disputes/{d.json()['dispute_id']}", headers=keys.auth("ann"))).json(),
        ):
            assert not {"agent_id", "team", "opened_by"} & set(view), view
