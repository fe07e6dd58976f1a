"""Reporting against the real broker and database: every figure equals the oracle's recomputation from the
raw events (tests/integration/reporting_stream.py), and no key sees more than its tenant and role allow."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from qastream_reporting.app import SPEC
from qastream_shared import events as ev
from qastream_shared.events import Role
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, eventually, produce, read_topic
from qastream_shared.topics import REVIEWS, dlq, ensure_topics, physical
from tests.integration.reporting_stream import Oracle, Stream, build, publish

pytestmark = pytest.mark.integration


def close(a: float | None, b: float | None, tol: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


@pytest.fixture
async def reporting(settings, spawn):
    """A reporting service fed the fixture streams of two tenants (and one malformed record)."""
    await ensure_topics(settings)
    keys = {
        "admin": await add_tenant(settings, "acme"),
        "beta": await add_tenant(settings, "beta"),
        "agent": await add_tenant(settings, "acme", Role.agent, agent_id="agent-1", team="team-a"),
        "lead": await add_tenant(settings, "acme", Role.team_lead, team="team-b"),
        "reviewer": await add_tenant(settings, "acme", Role.reviewer, agent_id="rev-1"),
    }
    acme, beta = build("acme"), build("beta", seed=99, conversations=30)
    await publish(settings, acme)
    await publish(settings, beta)
    await produce(
        settings,
        physical(REVIEWS, settings),
        [
            (
                b"acme:bad",
                b'{"review_id": 1}',
                [
                    ("ce_type", b"qa.review.submitted.v1"),
                    ("ce_id", b"bad-1"),
                    ("ce_source", b"x"),
                    ("ce_specversion", b"1.0"),
                    ("ce_tenant", b"acme"),
                ],
            )
        ],
    )
    expected = len(acme.all()) + len(beta.all()) + 1
    port = free_port()
    spawn(["-m", "qastream_reporting"], {"QA_HTTP_PORT": str(port)})
    runtime = ServiceRuntime(SPEC, settings)

    async def projected() -> bool:
        try:
            async with runtime.sessions() as s:
                n = (await s.execute(text("SELECT count(*) FROM inbox"))).scalar_one()
        except Exception:
            return False  # not migrated yet
        return n >= expected

    await eventually(projected, within=240)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield http, keys, Oracle(acme.all()), Oracle(beta.all()), runtime
    await runtime.engine.dispose()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def get(http: httpx.AsyncClient, key: str, path: str, **params: Any) -> dict[str, Any]:
    r = await http.get(f"/v1/metrics/{path}", params=params, headers=auth(key))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["freshness"]["lag_seconds"] is not None
    return body


async def everything(http: httpx.AsyncClient, key: str, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a grouped metric, following the cursor page by page."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = await get(http, key, path, limit=2, **params, **({"cursor": cursor} if cursor else {}))
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_every_figure_equals_the_recomputation_from_raw_events(reporting):
    http, keys, acme, _, _ = reporting
    admin = keys["admin"]
    for kind in ("combined", "auto", "manual"):
        got = (await get(http, admin, "quality", kind=kind))["items"][0]
        want = acme.quality(kind)
        assert got["reviews"] == want["reviews"], kind
        for k in ("iqs", "pass_rate", "auto_fail_rate"):
            assert close(got[k], want[k]), (kind, k, got[k], want[k])
    for version in (1, 2):
        got = (await get(http, admin, "quality", kind="auto", scorecard_version=version))["items"][0]
        want = acme.quality("auto", version=version)
        assert got["reviews"] == want["reviews"] and close(got["iqs"], want["iqs"])
    by_team = {i["team"]: i for i in await everything(http, admin, "quality", group_by="team")}
    assert set(by_team) == {"team-a", "team-b"}
    for team, got in by_team.items():
        want = acme.quality("combined", lambda r, team=team: r["team"] == team)
        assert got["reviews"] == want["reviews"] and close(got["iqs"], want["iqs"])
    by_week = await everything(http, admin, "quality", group_by=["week", "channel"])
    assert sum(i["reviews"] for i in by_week) == acme.quality("combined")["reviews"]

    cats = {
        i["category_id"]: i["score"]
        for i in await everything(http, admin, "categories", group_by="category_id")
    }
    assert cats.keys() == acme.categories().keys()
    assert all(close(cats[c], v) for c, v in acme.categories().items())
    causes = {
        i["root_cause"]: i["count"]
        for i in await everything(http, admin, "root-causes", group_by="root_cause")
    }
    assert causes == acme.root_causes()

    agreement = {
        i["category_id"]: i for i in await everything(http, admin, "agreement", group_by="category_id")
    }
    want_agreement = acme.agreement()
    assert agreement.keys() == want_agreement.keys()
    for c, (pairs, exact) in want_agreement.items():
        assert agreement[c]["pairs"] == pairs and close(agreement[c]["exact_agreement"], exact)
    want_alpha = acme.agreement_alpha()
    assert any(a is not None for a in want_alpha.values())
    for c, a in want_alpha.items():
        assert close(agreement[c]["alpha"], a), (c, agreement[c]["alpha"], a)

    customer = (await get(http, admin, "customer"))["items"][0]
    for k, v in acme.customer().items():
        assert close(customer[k], v), (k, customer[k], v)

    for measure in ("qa", "pcsat"):
        got = (await get(http, admin, "csat-correlation", measure=measure))["items"][0]
        rho, n = acme.spearman(measure)
        assert got["n"] == n and close(got["rho"], rho, 1e-9), (measure, got, rho, n)
    pcsat = (await get(http, admin, "pcsat"))["items"][0]
    assert close(pcsat["agreement"]["rho"], acme.spearman("pcsat")[0])
    assert close(pcsat["survey_coverage"], acme.customer()["survey_coverage"])
    predicted = acme.pcsat_by_conversation()
    assert pcsat["pcsat_predictions"] == len(predicted) > 0
    assert close(pcsat["pcsat_coverage"], len(predicted) / acme.customer()["conversations"])

    dw = (await get(http, admin, "design-weighted"))["items"][0]
    want_dw = acme.design_weighted()
    hajek, ht = dw["hajek"], dw["horvitz_thompson"]
    assert all(
        close(a, b)
        for a, b in zip((hajek["estimate"], hajek["ci_low"], hajek["ci_high"]), want_dw["hajek"], strict=True)
    )
    assert all(
        close(a, b) for a, b in zip((ht["estimate"], ht["ci_low"], ht["ci_high"]), want_dw["ht"], strict=True)
    )
    assert close(dw["raw_mean"]["mean"], want_dw["raw"])

    revs = {i["reviewer_id"]: i for i in await everything(http, admin, "reviewers", group_by="reviewer_id")}
    assert {
        k: (v["reviews"], v["seconds_per_review"]) for k, v in revs.items()
    }.keys() == acme.reviewers().keys()
    for k, (n, mean) in acme.reviewers().items():
        assert revs[k]["reviews"] == n and close(revs[k]["seconds_per_review"], mean)

    disputes = (await get(http, admin, "disputes"))["items"][0]
    want_disputes = acme.disputes_summary()
    for k in ("opened", "accepted", "rejected", "resolved"):
        assert disputes[k] == want_disputes[k], k
    assert close(disputes["dispute_rate"], want_disputes["dispute_rate"])

    alpha = {i["day"]: i["alpha"] for i in await everything(http, admin, "calibrations", group_by="day")}
    want_alpha = acme.calibration_alpha_by_day()
    assert {d: a for d, a in alpha.items() if a is not None} == {
        d.isoformat(): a for d, a in want_alpha.items()
    }

    for kind in ("auto", "manual"):
        for version in (1, 3):
            r = await http.get(
                "/v1/metrics/shadow",
                params={"scorecard_id": "cs", "scorecard_version": version, "kind": kind},
                headers=auth(admin),
            )
            assert r.status_code == 200, r.text
            body, want_shadow = r.json(), acme.shadow(kind, version)
            assert body["shadow"]["scored"] == want_shadow["reviews"]
            assert close(body["shadow"]["iqs"], want_shadow["iqs"]), (kind, version, body, want_shadow)
            assert close(body["shadow"]["pass_rate"], want_shadow["pass_rate"])
            if version == 1:  # the live rule itself: the shadow equals the live figures
                assert close(body["shadow"]["iqs"], body["live"]["iqs"])
    r = await http.get(
        "/v1/metrics/shadow", params={"scorecard_id": "cs", "scorecard_version": 9}, headers=auth(admin)
    )
    assert r.status_code == 404
    r = await http.get("/v1/metrics/shadow", params={"scorecard_id": "cs"}, headers=auth(admin))
    assert r.status_code == 422 and "scorecard_version" in r.json()["detail"]

    assigned = {i["team"]: i for i in await everything(http, admin, "assignments", group_by="team")}
    want_assigned = acme.assignments_by_team()
    assert assigned.keys() == want_assigned.keys()
    for team, counts in want_assigned.items():
        for k in ("assignments", "completed", "open"):
            want = counts["created"] if k == "open" else counts[k]
            assert assigned[team][k] == want, (team, k, assigned[team], counts)

    alerts = {
        i["agent_id"]: i["alerts"] for i in await everything(http, admin, "risk-alerts", group_by="agent_id")
    }
    assert alerts == acme.alerts_by_agent()

    coaching = (await get(http, admin, "coaching"))["items"][0]
    assert coaching["tasks"] == len(acme.tasks)
    assert coaching["completed"] == sum(t["status"] == "completed" for t in acme.tasks.values())
    impact = (await get(http, admin, "coaching-impact"))["items"][0]
    diffs = [i["difference"] for i in acme.impacts.values()]
    assert impact["measured"] == len(diffs) and close(impact["mean_difference"], sum(diffs) / len(diffs))


ENDPOINTS = (
    "quality",
    "categories",
    "root-causes",
    "agreement",
    "customer",
    "reviewers",
    "assignments",
    "calibrations",
    "coaching",
    "coaching-impact",
    "risk-alerts",
    "design-weighted",
    "csat-correlation",
    "pcsat",
    "disputes",
    "shadow",
)
# Endpoints that need parameters of their own to answer; isolation is checked on them with those.
NEEDS = {"shadow": {"scorecard_id": "cs", "scorecard_version": 1}}

WITHOUT_AGENTS = {"calibrations"}  # tenant-wide figures: filtering them by agent is a bad query


async def test_tenant_and_role_isolation_on_every_endpoint(reporting):
    http, keys, acme, beta, _ = reporting
    # Another tenant sees its own figures only.
    got = (await get(http, keys["beta"], "quality"))["items"][0]
    assert got["reviews"] == beta.quality("combined")["reviews"] != acme.quality("combined")["reviews"]
    # An agent sees their own numbers; a team lead their team's.
    mine = (await get(http, keys["agent"], "quality"))["items"][0]
    assert mine["reviews"] == acme.quality("combined", lambda r: r["agent_id"] == "agent-1")["reviews"]
    teams = {i["team"] for i in await everything(http, keys["lead"], "quality", group_by="team")}
    assert teams == {"team-b"}
    agents = {i["agent_id"] for i in await everything(http, keys["agent"], "quality", group_by="agent_id")}
    assert agents == {"agent-1"}
    # The agent search narrows to ids containing the text, in any case, and never widens a role's scope.
    found = await everything(http, keys["admin"], "quality", group_by="agent_id", agent_contains="GENT-1")
    all_ids = {i["agent_id"] for i in await everything(http, keys["admin"], "quality", group_by="agent_id")}
    assert {i["agent_id"] for i in found} == {a for a in all_ids if "gent-1" in a} != all_ids
    searched = await everything(http, keys["agent"], "quality", group_by="agent_id", agent_contains="agent")
    assert {i["agent_id"] for i in searched} == {"agent-1"}
    revs = {
        i["reviewer_id"]
        for i in await everything(http, keys["reviewer"], "reviewers", group_by="reviewer_id")
    }
    assert revs == {"rev-1"}
    for path in ENDPOINTS:
        r = await http.get(f"/v1/metrics/{path}", params=NEEDS.get(path, {}))
        assert r.status_code == 401, path
        needs = NEEDS.get(path, {})
        r = await http.get(
            f"/v1/metrics/{path}", params={"agent_id": "agent-2", **needs}, headers=auth(keys["agent"])
        )
        if path in WITHOUT_AGENTS:
            assert r.status_code == 422 and "agent_id" in r.json()["detail"], (path, r.text)
        else:
            assert r.status_code == 403, (path, r.text)
        r = await http.get(f"/v1/metrics/{path}", params=needs, headers=auth(keys["beta"]))
        assert r.status_code == 200, path
        assert r.json()["freshness"]["last_review_at"] is not None
    # A team lead sees the assignments and risk alerts of their team's conversations and agents only.
    for path in ("assignments", "risk-alerts"):
        seen = {i["team"] for i in await everything(http, keys["lead"], path, group_by="team")}
        assert seen == {"team-b"}, path
    mine = {i["agent_id"] for i in await everything(http, keys["agent"], "risk-alerts", group_by="agent_id")}
    assert mine == {"agent-1"}
    for path in ("quality", "customer", "disputes", "coaching", "assignments", "risk-alerts"):
        r = await http.get(f"/v1/metrics/{path}", params={"team": "team-a"}, headers=auth(keys["lead"]))
        assert r.status_code == 403, path
        assert "team_lead" in r.json()["detail"]


async def test_bad_queries_get_a_422_naming_the_parameter(reporting):
    http, keys, *_ = reporting
    admin = auth(keys["admin"])
    cases = [
        ({"colour": "red"}, "colour"),
        ({"from": "2026-03-09", "to": "2026-03-02"}, "from"),
        ({"group_by": "weather"}, "group_by"),
        ({"scorecard_version": "0"}, "scorecard_version"),
        ({"kind": "robot"}, "kind"),
        ({"from": "yesterday"}, "from"),
        ({"cursor": "garbage", "group_by": "team"}, "cursor"),
    ]
    for params, field in cases:
        r = await http.get("/v1/metrics/quality", params=params, headers=admin)
        assert r.status_code == 422, (params, r.text)
        assert field in r.json()["detail"], (params, r.json())
    r = await http.get("/v1/metrics/calibrations", params={"agent_contains": "a"}, headers=admin)
    assert r.status_code == 422 and "agent_contains" in r.json()["detail"]
    r = await http.get("/v1/metrics/quality", params={"agent_contains": ""}, headers=admin)
    assert r.status_code == 422 and "agent_contains" in r.json()["detail"]
    r = await http.get("/v1/metrics/coaching", params={"reviewer_id": "rev-1"}, headers=admin)
    assert r.status_code == 422 and "reviewer_id" in r.json()["detail"]


async def test_a_malformed_event_is_dead_lettered_with_its_reason(reporting, settings):
    records = await read_topic(settings, physical(dlq("reporting"), settings), expect=1)
    reasons = [dict(r.headers)["dlq_reason"].decode() for r in records]
    assert any("schema violation" in reason for reason in reasons), reasons


async def test_the_stream_pushes_a_scopes_figures_as_reviews_arrive(reporting, settings):
    http, keys, acme, *_ = reporting
    r = await http.get("/v1/stream", params={"agent_id": "agent-2"}, headers=auth(keys["agent"]))
    assert r.status_code == 403
    r = await http.get("/v1/stream", params={"group_by": "team"}, headers=auth(keys["admin"]))
    assert r.status_code == 422 and "group_by" in r.json()["detail"]
    want = acme.quality("combined", lambda r: r["team"] == "team-a")["reviews"]
    async with http.stream("GET", "/v1/stream", params={"team": "team-a"}, headers=auth(keys["admin"])) as s:
        assert s.status_code == 200
        lines = s.aiter_lines()

        async def next_figures() -> dict[str, Any]:
            async for line in lines:
                if line.startswith("data:"):
                    return orjson.loads(line[5:])
            raise AssertionError("the stream ended")

        first = await asyncio.wait_for(next_figures(), 30)
        assert first["quality"]["reviews"] == want
        extra = Stream("acme")
        for team, rid in (("team-b", "other-team"), ("team-a", "new-review")):
            extra.add(
                REVIEWS,
                ev.ReviewSubmitted(
                    review_id=rid,
                    conversation_id=f"acme-{rid}",
                    kind=ev.ReviewKind.auto,
                    scorecard_id="cs",
                    scorecard_version=1,
                    ratings=[ev.Rating(category_id="greeting", value=5, score=1.0)],
                    score=1.0,
                    passed=True,
                    team=team,
                    agent_id="agent-9",
                    channel="chat",
                    submitted_at=datetime.now(UTC),
                ),
                f"acme-{rid}",
            )
        await publish(settings, extra)
        pushed = await asyncio.wait_for(next_figures(), 60)
        # Only the scope's own change is pushed: the other team's review moved nothing here.
        assert pushed["quality"]["reviews"] == want + 1
        assert pushed["freshness"]["lag_seconds"] is not None
