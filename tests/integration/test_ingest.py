"""Issue 4's must-shows for ingest, over real HTTP against a real broker and database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from qastream_ingest.app import SPEC
from qastream_ingest.cli import _import
from qastream_ingest.tables import conversations
from qastream_shared.conversation import MAX_TURN_CHARS, MAX_TURNS
from qastream_shared.events import (
    ConversationIngested,
    Envelope,
    InboundConversation,
    Role,
    conversation_key,
    decode,
    encode,
)
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import STAR, eventually, isolated_settings, produce, read_topic, star_records
from qastream_shared.topics import CONVERSATIONS, INBOUND_CONVERSATIONS, dlq, physical
from tests.integration.conftest import Proc
from tests.integration.conftest_ingest import LiveIngest, create_tenants, star_stream, take
from tests.integration.live_service import AGENT_ID, TEAM, Tenant

pytestmark = pytest.mark.integration

TENANTS = ("acme", "globex", "fuzz", "star")


@pytest.fixture(scope="module")
def live_settings(database_url: str, kafka_bootstrap: str) -> Settings:
    return isolated_settings(database_url, kafka_bootstrap)


@pytest.fixture(scope="module")
async def tenants(live_settings: Settings) -> dict[str, Tenant]:
    return await create_tenants(live_settings, *TENANTS)


@pytest.fixture(scope="module")
async def live(live_settings: Settings, tenants: dict[str, Tenant]) -> AsyncIterator[LiveIngest]:
    """One ingest process shared by the tests that do not kill it; each test uses its own tenant or ids."""
    ingest = LiveIngest(lambda args, env: Proc(args, live_settings, env))
    try:
        await ingest.start()
        yield ingest
    finally:
        ingest.stop()


# --- 1. the live OpenAPI holds: test_http_contract.py, for every service -------------------------


# --- 2. tenants are walled off; roles and revocation hold -------------------------------------------


async def post(
    client: httpx.AsyncClient, tenant: Tenant, body: Any, role: Role = Role.admin
) -> httpx.Response:
    return await client.post("/v1/conversations", json=body, headers=tenant.auth(role))


def conv(conversation_id: str, text: str, agent: str = AGENT_ID, team: str = TEAM) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "agent_ids": [agent],
        "team": team,
        "turns": [{"role": "customer", "text": text}, {"role": "agent", "text": "Happy to help."}],
    }


async def test_tenant_keys_of_every_role_never_reach_another_tenant(
    live: LiveIngest, tenants: dict[str, Tenant]
) -> None:
    a, b = tenants["acme"], tenants["globex"]
    readers = list(Role)
    writers = {Role.admin, Role.platform}
    fact_writers = {Role.admin, Role.platform, Role.qa_lead}
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as c:
        assert (
            await post(c, b, conv("b-1", "Globex original, write to ann@globex.example"))
        ).status_code == 202
        b_before = (await c.get("/v1/conversations/b-1", headers=b.auth())).json()
        assert b_before["turns"][0]["text"] == "Globex original, write to [EMAIL]"

        for role in readers:
            r = await c.get("/v1/conversations/b-1", headers=a.auth(role))
            assert r.status_code == 404, (role, r.text)
            r = await c.post("/v1/conversations/b-1/feedback", json={"csat": 1}, headers=a.auth(role))
            assert r.status_code == (404 if role in fact_writers else 403), (role, r.text)
            r = await c.post("/v1/conversations/b-1/events", json={"escalated": True}, headers=a.auth(role))
            assert r.status_code == (404 if role in fact_writers else 403), (role, r.text)
        for role in readers:
            r = await post(c, a, conv("b-1", f"Acme's own, by {role.value}"), role)
            assert r.status_code == (202 if role is Role.admin else 200 if role in writers else 403), r.text
        # Acme's admin created acme's own b-1; globex's is untouched and has no feedback or events.
        assert (await c.get("/v1/conversations/b-1", headers=a.auth())).json()["turns"][0]["text"] == (
            "Acme's own, by admin"
        )
        assert (await c.get("/v1/conversations/b-1", headers=b.auth())).json() == b_before

        listed = {k["key_id"] for k in (await c.get("/v1/keys", headers=a.auth())).json()}
        assert set(a.key_ids.values()) <= listed and not listed & set(b.key_ids.values())
        for key_id in b.key_ids.values():
            assert (await c.delete(f"/v1/keys/{key_id}", headers=a.auth())).status_code == 404
        assert (await c.get("/v1/tenant", headers=b.auth(Role.reviewer))).json()["tenant_id"] == "globex"

        no_emails = {"emails": False}
        assert (
            await c.put("/v1/tenant/redaction-policy", json=no_emails, headers=a.auth())
        ).status_code == 200
        assert (await c.get("/v1/tenant/redaction-policy", headers=a.auth())).json()["emails"] is False
        assert (await c.get("/v1/tenant/redaction-policy", headers=b.auth())).json()["emails"] is True
        for tenant in (a, b):
            assert (await post(c, tenant, conv("mail-1", "mail me at joe@example.com"))).status_code == 202
        texts = {
            t.tenant_id: (await c.get("/v1/conversations/mail-1", headers=t.auth())).json()["turns"][0][
                "text"
            ]
            for t in (a, b)
        }
        assert texts == {"acme": "mail me at joe@example.com", "globex": "mail me at [EMAIL]"}


async def test_scoped_roles_missing_bad_and_revoked_keys(
    live: LiveIngest, tenants: dict[str, Tenant]
) -> None:
    a = tenants["acme"]
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as c:
        r = await post(
            c,
            a,
            {
                "conversations": [
                    conv("own-1", "hi"),
                    conv("other-agent", "hi", agent="agent-2"),
                    conv("other-team", "hi", team="b"),
                ]
            },
        )
        assert r.json()["accepted"] == 3
        seen = {
            role: {
                cid
                for cid in ("own-1", "other-agent", "other-team")
                if (await c.get(f"/v1/conversations/{cid}", headers=a.auth(role))).status_code == 200
            }
            for role in Role
        }
        everything = {"own-1", "other-agent", "other-team"}
        assert seen == {
            Role.agent: {"own-1", "other-team"},  # agent-1's, whatever the team
            Role.team_lead: {"own-1", "other-agent"},  # team-a's
            Role.reviewer: everything,
            Role.qa_lead: everything,
            Role.admin: everything,
            Role.platform: everything,
        }

        assert (await c.post("/v1/conversations", json=conv("x", "hi"))).status_code == 401
        for bad in ("nonsense", "qa_0123456789abcdef_" + "A" * 43, a.keys[Role.admin] + "x"):
            r = await c.get("/v1/tenant", headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        r = await post(c, a, conv("x", "hi"), Role.reviewer)
        assert r.status_code == 403 and "reviewer" in r.json()["detail"]

        issued = (await c.post("/v1/keys", json={"role": "platform"}, headers=a.auth())).json()
        fresh = {"Authorization": f"Bearer {issued['key']}"}
        assert (
            await c.post("/v1/conversations", json=conv("by-fresh", "hi"), headers=fresh)
        ).status_code == 202
        assert (await c.delete(f"/v1/keys/{issued['key_id']}", headers=a.auth())).status_code == 204
        # Revocation takes effect on the very next request.
        assert (await c.post("/v1/conversations", json=conv("after", "hi"), headers=fresh)).status_code == 401
        assert (await c.delete(f"/v1/keys/{issued['key_id']}", headers=a.auth())).status_code == 404


# --- 4. importing the STAR file twice ------------------------------------------------------------------


async def test_import_of_star_then_reimport_is_all_duplicates(
    live: LiveIngest, live_settings: Settings, tenants: dict[str, Tenant]
) -> None:
    lines = sum(1 for _ in STAR.open("rb"))
    key = tenants["star"].keys[Role.platform]
    first = await _import(STAR, live.url, key, 500, None)
    assert (first["accepted"], first["duplicate"], first["rejected"], first["failed_batches"]) == (
        lines,
        0,
        0,
        0,
    )
    second = await _import(STAR, live.url, key, 500, None)
    assert (second["accepted"], second["duplicate"], second["rejected"]) == (0, lines, 0)
    assert lines == 4654
    assert await stored_ids(live_settings, "star") == {r["conversation_id"] for r in star_records()}


async def stored_ids(settings: Settings, tenant: str) -> set[str]:
    runtime = ServiceRuntime(SPEC, settings)
    try:
        async with runtime.sessions() as s:
            q = select(conversations.c.conversation_id).where(conversations.c.tenant_id == tenant)
            return set((await s.execute(q)).scalars())
    finally:
        await runtime.engine.dispose()


# --- 5. bad input gets a problem naming the field, never a 500 ---------------------------------------


async def test_bad_http_input_is_refused_naming_the_field(
    live: LiveIngest, tenants: dict[str, Tenant]
) -> None:
    a = tenants["acme"]
    async with httpx.AsyncClient(base_url=live.url, timeout=60, headers=a.auth()) as c:
        # The body size limit is every service's: test_http_contract.py.
        r = await c.post(
            "/v1/conversations", json={"conversations": [conv(f"n{i}", "hi") for i in range(1001)]}
        )
        assert r.status_code == 413 and r.json()["errors"][0]["field"] == "conversations"
        assert "conversations" in r.json()["detail"]

        r = await c.post(
            "/v1/conversations", content=b'{"conversation_id": ', headers={"content-type": "application/json"}
        )
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"

        long_turn = conv("long-turn", "y" * (MAX_TURN_CHARS + 1))
        many_turns = {**conv("many-turns", "hi"), "turns": [{"role": "agent", "text": "t"}] * (MAX_TURNS + 1)}
        unknown = {**conv("unknown-fields", "hi"), "priority": "high", "source_system": {"name": "zd"}}
        r = await c.post("/v1/conversations", json={"conversations": [long_turn, many_turns, unknown]})
        assert r.status_code == 202
        results = r.json()["results"]
        assert [x["status"] for x in results] == ["rejected", "rejected", "accepted"]
        assert results[0]["errors"][0]["field"] == "turns.0.text" and "turns.0.text" in results[0]["reason"]
        assert results[1]["errors"][0]["field"] == "turns" and results[1]["reason"].startswith("turns")
        stored = (await c.get("/v1/conversations/unknown-fields")).json()
        assert stored["metadata"] == {"priority": "high", "source_system": {"name": "zd"}}

        # Every item invalid: 422, still with per-item results.
        r = await c.post("/v1/conversations", json={"conversations": [long_turn]})
        assert r.status_code == 422 and r.json()["results"][0]["errors"][0]["field"] == "turns.0.text"


async def test_inbound_topic_ingests_valid_and_dead_letters_the_rest(
    live: LiveIngest, live_settings: Settings, tenants: dict[str, Tenant]
) -> None:
    topic = physical(INBOUND_CONVERSATIONS, live_settings)
    valid = inbound("acme", conv("from-kafka", "streamed in"))
    unknown_tenant = inbound("nobody", conv("lost", "streamed in"))
    key, _, headers = encode(inbound("acme", conv("broken", "streamed in")))
    invalid = (key, orjson.dumps({"conversation_id": "broken", "turns": "not a list"}), headers)
    await produce(live_settings, topic, [encode(valid), encode(unknown_tenant), invalid])

    async with httpx.AsyncClient(base_url=live.url, timeout=30, headers=tenants["acme"].auth()) as c:

        async def stored() -> bool:
            return (await c.get("/v1/conversations/from-kafka")).status_code == 200

        await eventually(stored)
        assert (await c.get("/v1/conversations/broken")).status_code == 404
    dead = await read_topic(live_settings, physical(dlq("ingest"), live_settings), expect=2)
    reasons = {r.key: dict(r.headers)["dlq_reason"].decode() for r in dead}
    assert len(dead) == 2
    assert "unknown tenant 'nobody'" in reasons[b"nobody:lost"]
    assert "turns" in reasons[b"acme:broken"]


async def test_a_batch_is_published_in_the_order_posted(
    live: LiveIngest, live_settings: Settings, tenants: dict[str, Tenant]
) -> None:
    """On each partition the conversations of one POST follow the order posted: the sampler judges each
    against the event times before it on its partition (it once followed a set's salted hash order)."""
    ids = [f"order-{i:02d}" for i in range(40)]
    async with httpx.AsyncClient(base_url=live.url, timeout=30, headers=tenants["globex"].auth()) as c:
        r = await c.post("/v1/conversations", json={"conversations": [conv(cid, "in order") for cid in ids]})
        assert r.status_code == 202 and r.json()["accepted"] == len(ids), r.text
    topic = physical(CONVERSATIONS, live_settings)

    async def published() -> list[tuple[int, str]] | None:
        records = await read_topic(live_settings, topic, expect=len(ids), within=5)
        mine = [
            (r.partition, e.conversation.conversation_id)
            for r in records
            if isinstance(e := decode(r.key, r.value, r.headers).data, ConversationIngested)
            and e.conversation.conversation_id in ids
            and r.key is not None
            and r.key.startswith(b"globex:")
        ]
        return mine if len(mine) >= len(ids) else None

    on_topic = await eventually(published, within=60, every=0)
    by_partition: dict[int, list[str]] = {}
    for partition, cid in on_topic:
        by_partition.setdefault(partition, []).append(cid)
    assert len(by_partition) > 1, "one partition proves nothing about the order across a batch"
    assert all(got == sorted(got) for got in by_partition.values()), by_partition


def inbound(tenant: str, body: dict[str, Any]) -> Envelope:
    return Envelope(
        data=InboundConversation.model_validate(body),
        source="test",
        tenant=tenant,
        key=conversation_key(tenant, body["conversation_id"]),
    )


# --- 3. SIGKILL under load loses nothing that was answered 202 --------------------------------------


async def test_sigkill_under_load_loses_no_accepted_conversation(settings: Settings, spawn: Any) -> None:
    tenant = (await create_tenants(settings, "acme"))["acme"]
    ingest = LiveIngest(lambda args, env: spawn(args, env))
    await ingest.start()
    stream = star_stream()
    accepted: set[str] = set()
    failed_batches = 0
    loaded = asyncio.Event()

    async def client() -> None:
        nonlocal failed_batches
        async with httpx.AsyncClient(base_url=ingest.url, timeout=30, headers=tenant.auth()) as c:
            while True:
                try:
                    r = await c.post("/v1/conversations", json={"conversations": take(stream, 50)})
                except httpx.TransportError:
                    failed_batches += 1  # killed mid-request: no answer, so no promise was made
                    return
                assert r.status_code == 202, r.text
                accepted.update(
                    x["conversation_id"] for x in r.json()["results"] if x["status"] == "accepted"
                )
                if len(accepted) >= 2000:
                    loaded.set()

    clients = [asyncio.create_task(client()) for _ in range(6)]
    await asyncio.wait_for(loaded.wait(), 120)
    ingest.kill()
    await asyncio.gather(*clients)
    assert failed_batches > 0, "the kill should catch requests in flight"

    await ingest.start()  # the restarted relay publishes what the killed one had not
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30, headers=tenant.auth()) as c:
        after = take(stream, 10)
        r = await c.post("/v1/conversations", json={"conversations": after})
        assert r.json()["accepted"] == 10
        accepted.update(x["conversation_id"] for x in after)

    stored = await stored_ids(settings, "acme")
    topic = physical(CONVERSATIONS, settings)

    async def published() -> set[str] | None:
        records = await read_topic(settings, topic, expect=len(stored), within=5)
        ids = {
            e.data.conversation.conversation_id
            for e in (decode(r.key, r.value, r.headers) for r in records)
            if isinstance(e.data, ConversationIngested)
        }
        return ids if ids >= stored else None

    on_topic = await eventually(published, within=90, every=0)
    assert on_topic is not None
    missing = accepted - on_topic
    assert not missing, f"{len(missing)} of {len(accepted)} accepted conversations never reached the topic"
    assert accepted <= stored
    # Nothing half-stored: a row without its event or an event without its row.
    assert on_topic == stored, (len(on_topic - stored), len(stored - on_topic))
    print(f"accepted {len(accepted)}, stored {len(stored)}, on topic {len(on_topic)}")
