"""Every review-workflow endpoint for every role, allowed and forbidden, across two tenants.

Tenant alpha holds the data; tenant beta's keys (an admin, and a reviewer and an agent with the same user
ids as alpha's) must never read or change any of it. Forbidden answers are 403 for a role that may never
do this, and 404 for a row this key may not see (the same answer as for a row that does not exist).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qastream_shared.events import Purpose, Role
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

ALPHA = {
    "admin": (Role.admin, {"agent_id": "adm"}),
    "lead": (Role.qa_lead, {"agent_id": "lead-1"}),
    "rev": (Role.reviewer, {"agent_id": "rev-1"}),
    "rev2": (Role.reviewer, {"agent_id": "rev-2"}),
    "tl": (Role.team_lead, {"agent_id": "tl-a", "team": "team-a"}),
    "tl_b": (Role.team_lead, {"agent_id": "tl-b", "team": "team-b"}),
    "agent": (Role.agent, {"agent_id": "agent-1"}),
    "agent2": (Role.agent, {"agent_id": "agent-2"}),
    "platform": (Role.platform, {}),
}
BETA = {
    "admin_b": (Role.admin, {"agent_id": "adm"}),
    "rev_b": (Role.reviewer, {"agent_id": "rev-1"}),
    "agent_b": (Role.agent, {"agent_id": "agent-1"}),
}
EVERYONE = [*ALPHA, *BETA]


async def test_every_role_on_every_endpoint_across_two_tenants(settings):
    await ensure_topics(settings)
    alpha = await issue_keys(settings, "alpha", ALPHA)
    beta = await issue_keys(settings, "beta", BETA)
    keys = Keys("both", {**alpha.keys, **beta.keys})
    async with in_process(settings) as http:
        await wait_for_key(http, keys.auth("admin"))
        await wait_for_key(http, keys.auth("admin_b"))

        async def call(who: str, method: str, path: str, body: Any = None, **params: Any) -> Any:
            return await http.request(method, path, json=body, params=params or None, headers=keys.auth(who))

        async def check(expect: dict[str, int], method: str, path: str, body: Any = None) -> dict[str, Any]:
            """Calls in the order given (forbidden first, so the allowed call finds the state unchanged)."""
            answers: dict[str, Any] = {}
            for who, status in expect.items():
                r = await call(who, method, path, body)
                assert r.status_code == status, f"{who} {method} {path}: {r.status_code} {r.text}"
                answers[who] = r.json() if r.content else None
            return answers

        def listed(who: str, path: str, **params: Any) -> Any:
            async def go() -> list[dict[str, Any]]:
                return items(await call(who, "GET", path, **params))

            return go()

        pool = {"reviewers": [{"reviewer_id": "rev-1"}]}
        await check(
            {r: 403 for r in EVERYONE if r not in ("admin", "lead", "admin_b")} | {"lead": 200},
            "PUT",
            "/v1/reviewers",
            pool,
        )
        assert (
            await call(
                "admin_b", "PUT", "/v1/reviewers", {"reviewers": [{"reviewer_id": "rev-1", "weight": 7}]}
            )
        ).status_code == 200
        got = await check(
            {"admin": 200, "lead": 200, "rev": 403, "tl": 403, "agent": 403, "platform": 403},
            "GET",
            "/v1/reviewers",
        )
        assert [(r["reviewer_id"], r["weight"]) for r in got["admin"]["reviewers"]] == [("rev-1", 1)]

        convs = [conversation(f"a{i}", agent="agent-1") for i in range(4)]
        envs = [sample("alpha", c, p) for c in convs for p in (Purpose.auto, Purpose.manual)]
        envs.append(sample("beta", conversation("b1", agent="agent-1"), Purpose.manual))
        await produce_samples(settings, envs)

        async def all_assigned() -> bool:
            return (
                len(await listed("admin", "/v1/assignments")) == 4
                and len(await listed("admin_b", "/v1/assignments")) == 1
            )

        await eventually(all_assigned, within=60)
        # Lists: each key sees what its role allows, never the other tenant's.
        assert {a["conversation_id"] for a in await listed("admin_b", "/v1/assignments")} == {"b1"}
        assert len(await listed("rev", "/v1/assignments")) == 4
        assert await listed("rev2", "/v1/assignments") == []
        assert (
            len(await listed("tl", "/v1/assignments")) == 4 and await listed("tl_b", "/v1/assignments") == []
        )
        assert len(await listed("platform", "/v1/assignments")) == 4
        await check({"agent": 403, "agent_b": 403}, "GET", "/v1/assignments")

        # next: reviewing keys only; beta's rev-1 gets beta's work, never alpha's.
        got = await check(
            {
                "agent": 403,
                "platform": 403,
                "rev2": 204,
                "tl": 204,
                "lead": 204,
                "admin": 204,
                "rev_b": 200,
                "rev": 200,
            },
            "GET",
            "/v1/assignments/next",
        )
        assert got["rev_b"]["conversation_id"] == "b1"
        a0, conv0 = got["rev"]["assignment_id"], got["rev"]["conversation_id"]
        a1, a2 = [
            a["assignment_id"] for a in await listed("admin", "/v1/assignments") if a["assignment_id"] != a0
        ][:2]
        readers = {
            "rev2": 404,
            "tl_b": 404,
            "agent": 403,
            "admin_b": 404,
            "rev_b": 404,
            "admin": 200,
            "lead": 200,
            "rev": 200,
            "tl": 200,
            "platform": 200,
        }
        await check(readers, "GET", f"/v1/assignments/{a0}")

        opened = (await call("rev", "GET", f"/v1/assignments/{a0}")).json()
        cats = [c for g in opened["scorecard"]["groups"] for c in g["categories"]]
        ratings = [{"category_id": c["category_id"], "value": 1} for c in cats]
        only_assignee = {
            "rev2": 404,
            "admin_b": 404,
            "rev_b": 404,
            "agent": 403,
            "platform": 403,
            "admin": 403,
            "lead": 403,
            "tl": 403,
        }
        await check(
            {**only_assignee, "rev": 200}, "PUT", f"/v1/assignments/{a0}/draft", {"ratings": ratings[:1]}
        )
        got = await check(
            {**only_assignee, "rev": 201}, "POST", f"/v1/assignments/{a0}/review", {"ratings": ratings}
        )
        rid = got["rev"]["review_id"]

        leads_only = {"rev": 403, "tl": 403, "agent": 403, "platform": 403, "admin_b": 404}
        await check(
            {**leads_only, "lead": 200},
            "POST",
            f"/v1/assignments/{a1}/reassign",
            {"reviewer_id": "rev-2", "reason": "load"},
        )
        await check(
            {"agent": 403, "platform": 403, "rev": 404, "admin_b": 404, "tl": 403, "rev2": 200},
            "POST",
            f"/v1/assignments/{a1}/skip",
            {"reason": "conflict"},
        )
        await check(
            {**leads_only, "admin": 200}, "POST", f"/v1/assignments/{a2}/remove", {"reason": "test chat"}
        )
        await check({"lead": 409}, "POST", f"/v1/assignments/{a2}/remove", {"reason": "again"})

        # Reviews: the list, one review, its history, the summary.
        assert {r["review_id"] for r in await listed("rev", "/v1/reviews")} == {rid}
        assert await listed("rev2", "/v1/reviews") == [] and await listed("agent2", "/v1/reviews") == []
        assert len(await listed("agent", "/v1/reviews")) == 5  # four AutoQA reviews and the manual one
        assert len(await listed("tl", "/v1/reviews")) == 5 and await listed("tl_b", "/v1/reviews") == []
        for who in BETA:
            assert all(r["conversation_id"] == "b1" for r in await listed(who, "/v1/reviews"))
        see_review = {
            "rev2": 404,
            "tl_b": 404,
            "agent2": 404,
            "admin_b": 404,
            "rev_b": 404,
            "agent_b": 404,
            "admin": 200,
            "lead": 200,
            "rev": 200,
            "tl": 200,
            "agent": 200,
            "platform": 200,
        }
        await check(see_review, "GET", f"/v1/reviews/{rid}")
        auto_id = next(r["review_id"] for r in await listed("agent", "/v1/reviews") if r["kind"] == "auto")
        await check(
            {"rev": 404, "rev_b": 404, "agent2": 404, "admin_b": 404, "agent": 200, "tl": 200},
            "GET",
            f"/v1/reviews/{auto_id}",
        )
        await check(see_review, "GET", f"/v1/reviews/{rid}/history")
        got = await check({w: 200 for w in EVERYONE}, "GET", "/v1/reviews/summary?kind=manual")
        assert got["admin"]["items"] and got["admin_b"]["items"] == [] and got["agent2"]["items"] == []

        # Disputes: agents on their own reviews, team leads on their team's, admins; resolved by the
        # review's reviewer, QA leads and admins.
        cat_a, cat_b = cats[0]["category_id"], cats[1]["category_id"]
        path = f"/v1/reviews/{rid}/disputes"
        no_dispute = {
            "lead": 403,
            "rev": 403,
            "platform": 403,
            "agent2": 404,
            "tl_b": 404,
            "admin_b": 404,
            "agent_b": 404,
        }
        d1 = (
            await check({**no_dispute, "agent": 201}, "POST", path, {"category_id": cat_a, "reason": "I did"})
        )["agent"]
        d2 = (await check({"tl": 201}, "POST", path, {"category_id": cat_b, "reason": "they did"}))["tl"]
        d3 = (await check({"admin": 201}, "POST", path, {"reason": "all of it"}))["admin"]
        assert (
            len(await listed("agent", "/v1/disputes")) == 3 and len(await listed("rev", "/v1/disputes")) == 3
        )
        assert await listed("agent2", "/v1/disputes") == [] and await listed("rev2", "/v1/disputes") == []
        assert await listed("tl_b", "/v1/disputes") == [] and await listed("admin_b", "/v1/disputes") == []
        await check(see_review, "GET", f"/v1/disputes/{d1['dispute_id']}")
        no_resolve = {"agent": 403, "tl": 403, "platform": 403, "rev2": 404, "admin_b": 404}
        reject = {"outcome": "rejected", "comment": "scored right"}
        await check({**no_resolve, "rev": 200}, "POST", f"/v1/disputes/{d1['dispute_id']}/resolve", reject)
        accept = {"outcome": "accepted", "comment": "fair", "ratings": [{"category_id": cat_b, "value": 2}]}
        await check({**no_resolve, "lead": 200}, "POST", f"/v1/disputes/{d2['dispute_id']}/resolve", accept)
        await check({**no_resolve, "admin": 200}, "POST", f"/v1/disputes/{d3['dispute_id']}/resolve", reject)

        # Calibration: QA leads and admins open and close; participants rate; the others see nothing.
        body = {
            "conversation_ids": ["a0", "a1"],
            "participants": ["rev-1", "tl-a"],
            "deadline": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        }
        await check({"rev": 403, "tl": 403, "agent": 403, "platform": 403}, "POST", "/v1/calibrations", body)
        assert (
            await call("admin_b", "POST", "/v1/calibrations", body)
        ).status_code == 422  # alpha's conversations are unknown to beta
        sid = (await check({"lead": 201}, "POST", "/v1/calibrations", body))["lead"]["session_id"]
        assert (
            len(await listed("rev", "/v1/calibrations")) == 1
            and await listed("rev2", "/v1/calibrations") == []
        )
        assert (
            await listed("agent", "/v1/calibrations") == []
            and await listed("admin_b", "/v1/calibrations") == []
        )
        await check(
            {
                "rev2": 404,
                "agent": 404,
                "tl_b": 404,
                "admin_b": 404,
                "rev_b": 404,
                "lead": 200,
                "admin": 200,
                "platform": 200,
                "rev": 200,
                "tl": 200,
            },
            "GET",
            f"/v1/calibrations/{sid}",
        )
        rating = {"conversation_id": "a0", "ratings": ratings}
        await check(
            {
                "rev2": 404,
                "admin_b": 404,
                "rev_b": 404,
                "agent": 403,
                "platform": 403,
                "admin": 403,
                "tl": 201,
                "rev": 201,
            },
            "POST",
            f"/v1/calibrations/{sid}/reviews",
            rating,
        )
        await check(
            {"rev": 403, "tl": 403, "agent": 403, "platform": 403, "admin_b": 404, "lead": 200},
            "POST",
            f"/v1/calibrations/{sid}/close",
        )

        # AI-vs-human agreement: QA leads, admins and platform keys; beta sees none of alpha's pairs.
        got = await check(
            {"rev": 403, "tl": 403, "agent": 403, "admin": 200, "lead": 200, "platform": 200, "admin_b": 200},
            "GET",
            "/v1/agreement",
        )
        assert got["admin_b"]["versions"] == []
        # The reviewed conversation has an AutoQA review and the manual one (at its current revision): one pair per category.
        by_kind = {r["kind"]: r for r in await listed("admin", "/v1/reviews", conversation_id=conv0)}
        auto = {r["category_id"]: r.get("value") for r in by_kind["auto"]["ratings"]}
        manual = {r["category_id"]: r.get("value") for r in by_kind["manual"]["ratings"]}
        assert manual[cat_b] == 2  # the accepted dispute's revision
        both = {c for c in auto if auto[c] is not None and manual.get(c) is not None}
        [version] = got["admin"]["versions"]
        assert {c["category_id"]: (c["pairs"], c["percent_agreement"]) for c in version["categories"]} == {
            c: (1, 1.0 if auto[c] == manual[c] else 0.0) for c in both
        }
