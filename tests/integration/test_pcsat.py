"""pCSAT against the real broker and database: published with the auto review, back-filled by `qa rescore`
under a new model version, identical on replay and rescore, shown by the API; the sampler's
"predicted dissatisfied >= p" rule picks exactly the conversations at or above p."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from qastream_sampler.app import SPEC as SAMPLER
from qastream_sampler.tables import inputs, plans, sample_log
from qastream_scoring.app import SPEC
from qastream_scoring.pcsat import current
from qastream_scoring.pcsat.model import NO_CUSTOMER
from qastream_scoring.tables import reviews
from qastream_shared.conversation import Conversation
from qastream_shared.events import (
    ConversationIngested,
    ConversationSampled,
    Envelope,
    PredictedCsat,
    Purpose,
    Rating,
    ReviewKind,
    ReviewSubmitted,
    conversation_key,
    decode,
)
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, eventually, produce_envelopes, read_topic, settings_env
from qastream_shared.topics import CONVERSATIONS, REVIEWS, SAMPLES, ensure_topics, physical
from tests.integration.test_sampler import conv, env
from tests.integration.test_scoring import sampled, star

pytestmark = pytest.mark.integration
N = 40


async def _pcsat_by_conversation(runtime: ServiceRuntime, *, with_pcsat: bool) -> dict[str, Any]:
    column = reviews.c.pcsat
    q = select(reviews.c.conversation_id, column).where(
        column.is_not(None) if with_pcsat else column.is_(None)
    )
    async with runtime.sessions() as s:
        return {r.conversation_id: r.pcsat for r in (await s.execute(q)).all()}


async def test_rescore_backfills_pcsat_and_replay_gives_the_same(
    settings: Settings, spawn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qastream_scoring.cli import _rescore

    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    await ensure_topics(settings)
    key = await add_tenant(settings, "acme")
    silent = Conversation.model_validate(
        {"conversation_id": "agent-only", "turns": [{"role": "agent", "text": "Hello, how can I help?"}]}
    )
    convs = [*star(N - 1), silent]
    await produce_envelopes(settings, physical(SAMPLES, settings), [sampled("acme", c) for c in convs])

    # 1. A release without pCSAT scores everything.
    monkeypatch.setenv("QA_PCSAT_ENABLED", "false")
    runtime = ServiceRuntime(SPEC, settings)
    await runtime.start()
    try:

        async def scored() -> bool:
            async with runtime.sessions() as s:
                return int((await s.execute(select(func.count()).select_from(reviews))).scalar_one()) == N

        await eventually(scored, within=60)
    finally:
        await runtime.stop()
    assert len(await _pcsat_by_conversation(runtime, with_pcsat=False)) == N
    assert await _pcsat_by_conversation(runtime, with_pcsat=True) == {}

    # 2. `qa rescore` under the same scorecard version back-fills pCSAT as new reviews (a new model version).
    monkeypatch.setenv("QA_PCSAT_ENABLED", "true")
    assert await _rescore("acme", None, 1, None) == (N, N)
    assert await _rescore("acme", None, 1, None) == (0, N)  # idempotent
    rescored = await _pcsat_by_conversation(runtime, with_pcsat=True)
    async with runtime.sessions() as s:
        assert int((await s.execute(select(func.count()).select_from(reviews))).scalar_one()) == 2 * N
    assert len(rescored) == N
    assert all(p["model_version"] == current().version for p in rescored.values())
    assert (
        rescored["agent-only"]["p_dissatisfied"] is None and rescored["agent-only"]["reason"] == NO_CUSTOMER
    )
    # STAR has conversations the agent never answered: no number for them either, a reason instead.
    judged = [p for p in rescored.values() if p["reason"] is None]
    assert all(
        p["predicted"] is None and p["p_dissatisfied"] is None for p in rescored.values() if p["reason"]
    )
    assert len(judged) >= N // 2
    assert all(1 <= p["predicted"] <= 5 and 0 <= p["p_dissatisfied"] <= 1 and p["cues"] for p in judged)
    assert len({p["p_dissatisfied"] for p in judged}) > 5  # not one number for everyone

    # The stack's scoring service publishes what `qa rescore` stored (its relay reads the outbox).
    spawn(["-m", "qastream_scoring"], {"QA_HTTP_PORT": str(free_port())})

    # 3. Replay: a fresh schema consumes qa.samples from offset 0, as a new release with pCSAT on.
    replay = settings.model_copy(update={"db_schema": f"{settings.db_schema}_replay"})
    port = free_port()
    spawn(["-m", "qastream_scoring"], {"QA_HTTP_PORT": str(port)}, s=replay)
    replayed_rt = ServiceRuntime(SPEC, replay)

    async def replayed() -> dict[str, Any] | None:
        try:
            got = await _pcsat_by_conversation(replayed_rt, with_pcsat=True)
        except Exception:
            return None  # not migrated yet
        return got if len(got) == N else None

    replayed_pcsat = await eventually(replayed, within=90)
    assert replayed_pcsat == rescored

    # The events on qa.reviews carry exactly what was stored: the first release's reviews without pCSAT,
    # the rescore's and the replay's with it, each once.
    records = await read_topic(settings, physical(REVIEWS, settings), expect=3 * N, within=90)
    assert len(records) == 3 * N
    published: dict[str, list[PredictedCsat]] = {}
    for r in records:
        data = decode(r.key, r.value, r.headers).data
        assert isinstance(data, ReviewSubmitted)
        if data.pcsat is not None:
            published.setdefault(data.conversation_id, []).append(data.pcsat)
    assert {c: [p.model_dump(mode="json") for p in ps] for c, ps in published.items()} == {
        c: [p, p] for c, p in rescored.items()
    }

    # 4. The API shows each review's pCSAT and the model's validity with its n; both need a key.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        auth = {"Authorization": f"Bearer {key}"}

        async def ready() -> bool:
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, within=60)
        listed = (
            await http.get("/v1/reviews", params={"conversation_id": "agent-only"}, headers=auth)
        ).json()
        assert [i["pcsat"]["reason"] for i in listed["items"]] == [NO_CUSTOMER]
        model = await http.get("/v1/pcsat/model", headers=auth)
        assert model.status_code == 200
        doc = model.json()
        assert doc["version"] == current().version
        (held_out,) = [v for v in doc["validity"].values() if v["fitted"] is False]
        assert sum(b["n"] for b in held_out["reliability"]) == held_out["labelled"] > 1000
        assert (await http.get("/v1/pcsat/model")).status_code == 401
    await runtime.engine.dispose()
    await replayed_rt.engine.dispose()


THRESHOLD = 0.3
# p_dissatisfied per conversation: below, exactly at and above the threshold, and reviews without a number.
P_VALUES: list[float | None] = [0.05, 0.29, 0.2999, 0.3, 0.3001, 0.55, 0.97, None, 0.1, 0.31, None, 0.0, 1.0]


async def test_predicted_dissatisfied_rule_picks_exactly_the_conversations_at_or_above_p(
    settings: Settings, spawn: Any
) -> None:
    await ensure_topics(settings)
    await add_tenant(settings, "acme")
    runtime = ServiceRuntime(SAMPLER, settings)
    await migrate(settings, runtime.schema, SAMPLER.migrations)
    plan = {
        "plan_id": "unhappy-pcsat",
        "kind": "targeted",
        "rules": [{"kind": "predicted_dissatisfied", "at_least": THRESHOLD}],
    }
    async with runtime.unit_of_work() as uow:
        await uow.session.execute(
            plans.insert(), [{"tenant_id": "acme", "plan_id": "unhappy-pcsat", "version": 1, "body": plan}]
        )
    t0 = datetime(2025, 3, 4, 10, tzinfo=UTC)
    convs, reviews_ = [], []
    for i, p in enumerate(P_VALUES):
        cid = f"p{i:02d}"
        ended = t0 + timedelta(minutes=i)
        convs.append(
            env("acme", cid, ConversationIngested(conversation=conv(cid, ended, "a01"), ingested_at=ended))
        )
        pcsat = (
            PredictedCsat(model_version="1.0.0", predicted=1 + 4 * (1 - p), p_dissatisfied=p)
            if p is not None
            # Of the two without a number: one has no customer turn, one predates pCSAT (no field at all).
            else PredictedCsat(model_version="1.0.0", reason=NO_CUSTOMER)
            if i == P_VALUES.index(None)
            else None
        )
        reviews_.append(
            Envelope(
                data=ReviewSubmitted(
                    review_id=f"r-{cid}",
                    conversation_id=cid,
                    kind=ReviewKind.auto,
                    scorecard_id="customer-service",
                    scorecard_version=1,
                    ratings=[Rating(category_id="greeting", value=1, score=0.9)],
                    score=0.9,
                    pcsat=pcsat,
                    submitted_at=ended + timedelta(minutes=5),
                ),
                source="scoring",
                tenant="acme",
                key=conversation_key("acme", cid),
                subject=cid,
            )
        )
    await produce_envelopes(settings, physical(CONVERSATIONS, settings), convs)
    await produce_envelopes(settings, physical(REVIEWS, settings), reviews_)
    spawn(["-m", "qastream_sampler"], {"QA_HTTP_PORT": str(free_port())})

    async def consumed() -> bool:
        async with runtime.sessions() as s:
            n = int((await s.execute(select(func.count()).select_from(inputs))).scalar_one())
        return n == len(convs) + len(reviews_)

    await eventually(consumed, within=90, every=0.2)
    async with runtime.sessions() as s:
        manual = (
            await s.execute(
                select(sample_log.c.conversation_id, sample_log.c.rule).where(
                    sample_log.c.purpose == Purpose.manual.value
                )
            )
        ).all()
    expected = {f"p{i:02d}" for i, p in enumerate(P_VALUES) if p is not None and p >= THRESHOLD}
    assert {r.conversation_id for r in manual} == expected
    assert {r.rule for r in manual} == {f"p_dissatisfied>={THRESHOLD:g}"}
    records = await read_topic(settings, physical(SAMPLES, settings), expect=len(P_VALUES) + len(expected))
    samples = [decode(r.key, r.value, r.headers).data for r in records]
    assert all(isinstance(e, ConversationSampled) for e in samples)
    picked = {
        e.conversation_id
        for e in samples
        if isinstance(e, ConversationSampled) and e.purpose is Purpose.manual
    }
    assert picked == expected
    await runtime.engine.dispose()
