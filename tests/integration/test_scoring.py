"""Scoring against the real broker and database: exactly one AutoQA review per sampled conversation."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from qastream_ingest.importers import parse_star
from qastream_scoring.app import SPEC
from qastream_scoring.tables import reviews
from qastream_shared.events import (
    ConversationSampled,
    Envelope,
    Purpose,
    ReviewSubmitted,
    Role,
    conversation_key,
    decode,
)
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.stack import free_port
from qastream_shared.testing import STAR, add_tenant, eventually, produce_envelopes, read_topic
from qastream_shared.topics import REVIEWS, SAMPLES, ensure_topics, physical

pytestmark = pytest.mark.integration


def sampled(tenant: str, conv, purpose: Purpose = Purpose.auto) -> Envelope:
    return Envelope(
        data=ConversationSampled(
            conversation_id=conv.conversation_id,
            purpose=purpose,
            plan_id="auto-policy",
            plan_version=1,
            inclusion_probability=1.0,
            reason="auto-review policy: all conversations",
            conversation=conv,
            sampled_at=datetime.now(UTC),
        ),
        source="sampler",
        tenant=tenant,
        key=conversation_key(tenant, conv.conversation_id),
    )


def star(n: int) -> list:
    with STAR.open("rb") as fh:
        out = []
        for conv in parse_star(fh):
            out.append(conv)
            if len(out) == n:
                return out
    return out


async def test_exactly_one_auto_review_each_even_after_sigkill(settings, spawn):
    n = 1500
    await ensure_topics(settings)
    await add_tenant(settings, "acme")
    convs = star(n)
    await produce_envelopes(settings, physical(SAMPLES, settings), [sampled("acme", c) for c in convs])
    runtime = ServiceRuntime(SPEC, settings)
    # Migrated here first, so counting reviews never races the service's own migration.
    await migrate(settings, runtime.schema, SPEC.migrations)
    port = free_port()
    proc = spawn(["-m", "qastream_scoring"], {"QA_HTTP_PORT": str(port), "QA_CONSUMER_BATCH_SIZE": "100"})

    async def some_reviews() -> int:
        async with runtime.sessions() as s:
            c = int((await s.execute(select(func.count()).select_from(reviews))).scalar_one())
        return c if 0 < c < n else 0

    await eventually(some_reviews, within=90, every=0.05)
    proc.kill()  # SIGKILL mid-stream: committed batches stay, the rest is redelivered
    spawn(["-m", "qastream_scoring"], {"QA_HTTP_PORT": str(port)})

    async def all_reviews() -> bool:
        async with runtime.sessions() as s:
            return int((await s.execute(select(func.count()).select_from(reviews))).scalar_one()) >= n

    await eventually(all_reviews, within=120)
    records = await read_topic(settings, physical(REVIEWS, settings), expect=n, within=120)
    per_conversation: dict[str, set[str]] = defaultdict(set)
    for r in records:
        env = decode(r.key, r.value, r.headers)
        assert isinstance(env.data, ReviewSubmitted)
        assert env.data.kind.value == "auto" and env.causationid  # traced back to its sample
        per_conversation[env.data.conversation_id].add(env.data.review_id)
    assert len(per_conversation) == n
    assert all(len(ids) == 1 for ids in per_conversation.values())
    async with runtime.sessions() as s:
        assert int((await s.execute(select(func.count()).select_from(reviews))).scalar_one()) == n
        row = (await s.execute(select(reviews).limit(1))).mappings().one()
    await runtime.engine.dispose()
    # Every rating carries its provenance: scorer, version, confidence.
    auto_rated = [r for r in row["ratings"] if "provenance" in r]
    assert auto_rated and all({"scorer", "version", "confidence"} <= set(r["provenance"]) for r in auto_rated)


async def test_scorecard_api_versions_and_rejects_invalid_cards(settings, spawn):
    await ensure_topics(settings)
    key_a = await add_tenant(settings, "alpha")
    key_b = await add_tenant(settings, "beta")
    reviewer_b = await add_tenant(settings, "beta", role=Role.reviewer)
    port = free_port()
    spawn(["-m", "qastream_scoring"], {"QA_HTTP_PORT": str(port)})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

        async def up() -> bool:
            try:
                r = await http.get("/v1/scorecards", headers={"Authorization": f"Bearer {key_a}"})
            except httpx.TransportError:
                return False
            return r.status_code == 200

        await eventually(up, within=60)
        a = {"Authorization": f"Bearer {key_a}"}
        cards = (await http.get("/v1/scorecards", headers=a)).json()
        assert [c["scorecard_id"] for c in cards] == ["customer-service"]  # every tenant gets the default
        card = cards[0]
        assert card["version"] == 1
        names = {c["name"].lower() for g in card["groups"] for c in g["categories"]}
        assert len(names) >= 9

        card["groups"][0]["categories"][0]["weight"] = 42
        r = await http.put("/v1/scorecards/customer-service", json=card, headers=a)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 2
        old = (await http.get("/v1/scorecards/customer-service/versions/1", headers=a)).json()
        assert old["groups"][0]["categories"][0]["weight"] != 42  # published versions are immutable

        zero = {
            **card,
            "groups": [
                {**g, "categories": [{**c, "weight": 0} for c in g["categories"]]} for g in card["groups"]
            ],
        }
        r = await http.put("/v1/scorecards/customer-service", json=zero, headers=a)
        assert r.status_code == 422 and "weights all zero" in r.json()["detail"]
        unknown = {**card}
        unknown["groups"] = [dict(card["groups"][0])]
        unknown["groups"][0]["categories"] = [
            {**card["groups"][0]["categories"][0], "scorer": {"name": "telepathy", "params": {}}}
        ]
        r = await http.put("/v1/scorecards/customer-service", json=unknown, headers=a)
        assert r.status_code == 422 and "telepathy" in r.json()["detail"]

        # Tenant isolation: beta never sees alpha's version 2, and cannot publish into alpha.
        b = {"Authorization": f"Bearer {key_b}"}
        assert (await http.get("/v1/scorecards/customer-service", headers=b)).json()["version"] == 1
        assert (await http.get("/v1/scorecards/customer-service/versions/2", headers=b)).status_code == 404
        r = await http.put(
            "/v1/scorecards/customer-service", json=card, headers={"Authorization": f"Bearer {reviewer_b}"}
        )
        assert r.status_code == 403
        assert (
            await http.get("/v1/scorecards", headers={"Authorization": "Bearer qa_nope"})
        ).status_code == 401


async def test_rescore_adds_reviews_under_another_version_and_never_overwrites(settings, monkeypatch):
    from qastream_scoring import service
    from qastream_scoring.cli import _rescore
    from qastream_shared.testing import settings_env

    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    await ensure_topics(settings)
    await add_tenant(settings, "acme")
    convs = star(40)
    await produce_envelopes(settings, physical(SAMPLES, settings), [sampled("acme", c) for c in convs])
    runtime = ServiceRuntime(SPEC, settings)
    await runtime.start()
    try:

        async def scored() -> bool:
            async with runtime.sessions() as s:
                return int((await s.execute(select(func.count()).select_from(reviews))).scalar_one()) == 40

        await eventually(scored, within=60)
        async with runtime.unit_of_work() as uow:
            _, card = await service.config(uow, "acme")
            heavier = card.model_copy(deep=True)
            heavier.groups[0].categories[0].weight = 77
            v2 = await service.publish(uow, "acme", heavier)
        assert v2.version == 2
        created, seen = await _rescore("acme", None, 2, None)
        assert (created, seen) == (40, 40)
        assert await _rescore("acme", None, 2, None) == (0, 40)  # idempotent
        async with runtime.sessions() as s:
            versions: dict[int, int] = dict(
                (
                    await s.execute(
                        select(reviews.c.scorecard_version, func.count()).group_by(
                            reviews.c.scorecard_version
                        )
                    )
                ).all()
            )
        assert versions == {1: 40, 2: 40}  # the version-1 reviews are untouched
        # The summary counts each conversation once per scorecard version, never twice in one IQS.
        from qastream_scoring.stores import reviews as review_store
        from qastream_shared.auth import Principal

        admin = Principal("acme", Role.admin, "k")
        async with runtime.unit_of_work() as uow:
            rows, _ = await review_store.summary(uow, admin, "tenant", "auto", None, None, 100)
            only_v2, _ = await review_store.summary(uow, admin, "tenant", "auto", 2, None, 100)
            n_scored = (
                await uow.session.execute(
                    select(func.count()).where(reviews.c.scorecard_version == 1, reviews.c.score.is_not(None))
                )
            ).scalar_one()
        assert n_scored > 30  # a few conversations without an agent turn get no score
        assert [(r["scorecard_version"], r["reviews"]) for r in rows] == [(1, n_scored), (2, n_scored)]
        assert [(r["scorecard_version"], r["reviews"]) for r in only_v2] == [(2, n_scored)]
        # A second AutoQA review of one conversation in version 1 (a scorer upgrade): still counted once.
        async with runtime.unit_of_work() as uow:
            one = dict(
                (await uow.session.execute(select(reviews).where(reviews.c.score.is_not(None)).limit(1)))
                .mappings()
                .one()
            )
            newer = {
                **one,
                "review_id": "rescored",
                "score": 0.0,
                "submitted_at": one["submitted_at"] + timedelta(hours=1),
            }
            await uow.session.execute(reviews.insert().values(**newer))
        async with runtime.unit_of_work() as uow:
            after, _ = await review_store.summary(uow, admin, "tenant", "auto", 1, None, 100)
        assert after[0]["reviews"] == n_scored
        expected = (rows[0]["iqs"] * n_scored - one["score"]) / n_scored  # the newest review's 0 replaces it
        assert after[0]["iqs"] == pytest.approx(expected, abs=1e-3)
    finally:
        await runtime.stop()


async def test_reviews_and_settings_are_tenant_scoped_on_every_endpoint(settings, spawn):
    await ensure_topics(settings)
    key_a = await add_tenant(settings, "alpha")
    key_b = await add_tenant(settings, "beta")
    agent_a = await add_tenant(settings, "alpha", role=Role.agent, agent_id="nobody")
    convs = star(5)
    await produce_envelopes(settings, physical(SAMPLES, settings), [sampled("alpha", c) for c in convs])
    port = free_port()
    spawn(["-m", "qastream_scoring"], {"QA_HTTP_PORT": str(port)})
    a = {"Authorization": f"Bearer {key_a}"}
    b = {"Authorization": f"Bearer {key_b}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

        async def reviewed() -> list[dict[str, object]] | None:
            try:
                r = await http.get("/v1/reviews", headers=a)
            except httpx.TransportError:
                return None
            return r.json()["items"] if r.status_code == 200 and len(r.json()["items"]) == 5 else None

        mine = await eventually(reviewed, within=60)
        assert mine is not None
        rid, cid = mine[0]["review_id"], mine[0]["conversation_id"]
        assert (await http.get(f"/v1/reviews/{rid}", headers=a)).status_code == 200
        # beta: nothing of alpha's through any review endpoint
        assert (await http.get(f"/v1/reviews/{rid}", headers=b)).status_code == 404
        assert (await http.get("/v1/reviews", headers=b)).json()["items"] == []
        by_conv = await http.get("/v1/reviews", params={"conversation_id": str(cid)}, headers=b)
        assert by_conv.json()["items"] == []
        assert (await http.get("/v1/reviews/summary", headers=b)).json()["items"] == []
        # an agent key of alpha sees only its own agent's reviews (none here)
        agent_view = await http.get("/v1/reviews", headers={"Authorization": f"Bearer {agent_a}"})
        assert agent_view.json()["items"] == []
        # cursor paging: two pages of 3 and 2, no row twice, newest first
        first = (await http.get("/v1/reviews", params={"limit": 3}, headers=a)).json()
        second = (
            await http.get("/v1/reviews", params={"limit": 3, "cursor": first["next_cursor"]}, headers=a)
        ).json()
        assert len(first["items"]) == 3 and len(second["items"]) == 2 and second["next_cursor"] is None
        ids = [r["review_id"] for r in first["items"] + second["items"]]
        assert sorted(ids) == sorted(str(r["review_id"]) for r in mine)
        await sees_by_role(http, settings, convs, str(rid), str(cid))
        # beta changing its settings leaves alpha's untouched
        body = {"settings": {"pass_mark": 0.5}}
        assert (await http.put("/v1/scoring-settings", json=body, headers=b)).status_code == 200
        assert (await http.get("/v1/scoring-settings", headers=a)).json()["settings"]["pass_mark"] == 0.8
        assert (await http.get("/v1/scoring-settings", headers=b)).json()["settings"]["pass_mark"] == 0.5


async def sees_by_role(http: httpx.AsyncClient, settings, convs: list, review_id: str, of: str) -> None:
    """auth.visible on every review endpoint: each role of alpha sees exactly the reviews its rule allows."""
    agent, team = convs[0].agent_id, convs[0].team
    keys = {
        "qa_lead": await add_tenant(settings, "alpha", role=Role.qa_lead),
        "reviewer": await add_tenant(settings, "alpha", role=Role.reviewer, agent_id="rev-1"),
        "platform": await add_tenant(settings, "alpha", role=Role.platform),
        "agent": await add_tenant(settings, "alpha", role=Role.agent, agent_id=agent),
        "team_lead": await add_tenant(settings, "alpha", role=Role.team_lead, team=team),
        "agent_without_id": await add_tenant(settings, "alpha", role=Role.agent),
        "team_lead_without_team": await add_tenant(settings, "alpha", role=Role.team_lead),
    }
    everyone = {c.conversation_id for c in convs}
    expected = {
        "qa_lead": everyone,
        "reviewer": set(),  # a reviewer sees the reviews they wrote; AutoQA wrote these
        "platform": everyone,
        "agent": {c.conversation_id for c in convs if c.agent_id == agent},
        "team_lead": {c.conversation_id for c in convs if c.team == team},
        "agent_without_id": set(),
        "team_lead_without_team": set(),
    }
    # The data must tell the rules apart: the team and the agent each own some conversations, not all.
    assert set() < expected["agent"] < expected["team_lead"] < everyone

    async def listed(who: str) -> set[str]:
        auth = {"Authorization": f"Bearer {keys[who]}"}
        return {r["conversation_id"] for r in (await http.get("/v1/reviews", headers=auth)).json()["items"]}

    await eventually(lambda: _key_known(http, keys), within=60)
    for who, key in keys.items():
        auth = {"Authorization": f"Bearer {key}"}
        assert await listed(who) == expected[who], who
        summary = (await http.get("/v1/reviews/summary", headers=auth)).json()["items"]
        assert sum(g["reviews"] for g in summary) == len(expected[who]), who
        by_id = await http.get(f"/v1/reviews/{review_id}", headers=auth)
        assert by_id.status_code == (200 if of in expected[who] else 404), who


async def _key_known(http: httpx.AsyncClient, keys: dict[str, str]) -> bool:
    for key in keys.values():
        if (await http.get("/v1/scorecards", headers={"Authorization": f"Bearer {key}"})).status_code == 401:
            return False
    return True
