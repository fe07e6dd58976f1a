"""`explain` is read-only and exact: it builds a private state for one tenant, never the consumer's, and its
verdicts are the ones a full replay of the stored inputs gives."""

from __future__ import annotations

import random
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import Request

from qastream_sampler.api import explain_conversation
from qastream_sampler.app import SPEC
from qastream_sampler.explain import explain
from qastream_sampler.explain_store import explain_state
from qastream_sampler.handlers import store_of
from qastream_sampler.store import SamplerStore
from qastream_shared.auth import Principal
from qastream_shared.events import ConversationIngested, Role
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, eventually, produce_envelopes
from qastream_shared.topics import CONVERSATIONS, REVIEWS, ensure_topics, physical
from tests.integration.sampler_setup import install_plans
from tests.integration.test_sampler import (
    PLANS,
    T0,
    canonical_log,
    conv,
    env,
    recorded_inputs,
    run_to_completion,
    stream,
)

pytestmark = pytest.mark.integration

# The integration plans, plus pools that depend on other conversations' facts: a new-agent rule (each
# agent's first conversation) with a monthly per-agent fallback.
EXPLAIN_PLANS: list[dict[str, Any]] = [
    *PLANS,
    {
        "plan_id": "onboarding",
        "kind": "targeted",
        "rules": [{"kind": "new_agent", "days": 7}],
        "rate": 0.5,
        "fallback": {"per": "agent", "min_per_period": 3, "period": "month"},
        "priority": 50,
    },
]


async def test_explain_during_consumption_with_two_replicas_leaves_the_clean_runs_log(
    settings: Settings, spawn: Any
) -> None:
    await ensure_topics(settings)
    key = await add_tenant(settings, "acme")
    convs, reviews = stream("acme", 2000, agents=60)
    # Late arrivals: conversations of the first weeks produced after the whole stream, so they are behind
    # their partition's high by more than the grace and stay out of every pool.
    late_at = T0 + timedelta(weeks=7)
    convs += [
        env(
            "acme",
            f"late{i}",
            ConversationIngested(
                conversation=conv(f"late{i}", T0 + timedelta(days=i), "a01"), ingested_at=late_at
            ),
        )
        for i in range(20)
    ]
    n_inputs = len(convs) + len(reviews)
    ids = [e.data.conversation.conversation_id for e in convs if isinstance(e.data, ConversationIngested)]

    # The stream goes in in phases. Between two phases the replicas have consumed everything produced so
    # far and wait for more, and each replica must answer an explain before the next phase goes in: so
    # explains provably interleave with consumption, however fast or slow the machine is.
    busy = await install_plans(
        settings.model_copy(update={"db_schema": f"{settings.db_schema}_b"}), "acme", EXPLAIN_PLANS
    )
    ports = [free_port(), free_port()]
    for port in ports:
        spawn(["-m", "qastream_sampler"], {"QA_HTTP_PORT": str(port)}, s=busy.settings)
    clients = [
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers={"Authorization": f"Bearer {key}"}
        )
        for port in ports
    ]

    async def key_known() -> bool:
        # 404 (nothing consumed yet): the replica is up and knows the tenant's key.
        statuses = []
        for http in clients:
            try:
                statuses.append((await http.get(f"/v1/samples/explain/{ids[0]}")).status_code)
            except httpx.TransportError:
                return False
        return all(s == 404 for s in statuses)

    await eventually(key_known, within=180, every=0.2)  # process start-up: slow on a busy machine
    rng = random.Random(11)
    phases = 4
    produced = 0
    for k in range(phases):
        part_c = convs[k * len(convs) // phases : (k + 1) * len(convs) // phases]
        part_r = reviews[k * len(reviews) // phases : (k + 1) * len(reviews) // phases]
        await produce_envelopes(settings, physical(CONVERSATIONS, settings), part_c)
        await produce_envelopes(settings, physical(REVIEWS, settings), part_r)
        produced += len(part_c) + len(part_r)
        if k == phases - 1:
            break
        consumed = [
            e.data.conversation.conversation_id for e in part_c if isinstance(e.data, ConversationIngested)
        ]

        async def caught_up(n: int = produced) -> bool:
            return await recorded_inputs(busy) >= n

        await eventually(caught_up, within=90, every=0.2)
        for http in clients:  # consumption waits for the next phase until each replica has explained
            r = await http.get(f"/v1/samples/explain/{rng.choice(consumed)}")
            assert r.status_code == 200, r.text
            assert r.json()[0]["plan_id"] == "auto-policy"
    assert produced == n_inputs

    # The clean run: one replica over the same logs, no explains.
    clean = await install_plans(settings, "acme", EXPLAIN_PLANS)
    log_clean, procs = await run_to_completion(clean, spawn, 1, n_inputs)
    for p in procs:
        p.stop()

    async def same_as_clean() -> bool:
        return await canonical_log(busy) == log_clean

    await eventually(same_as_clean, within=60, every=0.5)
    for http in clients:
        await http.aclose()

    # The private state gives exactly the verdicts of a full replay, also for pool-bound plans.
    full = SamplerStore(clean.settings, 3, retain=False)  # every conversation, as explain's own replay
    async with clean.sessions() as session:
        await full.rebuild(session)
        for cid in random.Random(5).sample(ids, 150):
            own = await explain_state(session, clean.settings, "acme", cid)
            assert explain(own, cid) == explain(full.states["acme"], cid), cid
    verdicts = [
        v for cid in ids[:300] for v in explain(full.states["acme"], cid) if v.plan_id == "onboarding"
    ]
    assert {v.picked for v in verdicts} == {True, False}  # not vacuous: the pool-bound plan decided both ways

    # The endpoint leaves a replica's consumer state alone: a stale cache stays stale and empty.
    runtime = ServiceRuntime(SPEC, clean.settings)
    store = store_of(runtime)
    request = Request(
        {"type": "http", "method": "GET", "app": SimpleNamespace(state=SimpleNamespace(runtime=runtime))}
    )
    answer = await explain_conversation(
        request, ids[0], Principal(tenant_id="acme", role=Role.admin, key_id="k")
    )
    assert answer[0]["plan_id"] == "auto-policy"
    assert store.stale and store.states == {} and store.cursors == {}
    for rt in (clean, busy, runtime):
        await rt.engine.dispose()
