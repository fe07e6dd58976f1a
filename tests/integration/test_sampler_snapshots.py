"""The sampler's state snapshots on the real database: over 30 weeks of synthetic traffic the `inputs` table
stays flat, every decision is the unsnapshotted run's, a fresh replica rebuilds from snapshot + tail, and
explain still answers from them.

The consumer's handler runs in-process on batches of records with their (topic, partition, offset), as the
shared consumer hands them over: what is under test is the store and its tables, not the broker."""

from __future__ import annotations

import pickle
import random
from dataclasses import fields
from typing import Any

import pytest
from sqlalchemy import func, select, text

from qastream_sampler.app import SPEC
from qastream_sampler.decisions import Decision
from qastream_sampler.engine import SamplerState
from qastream_sampler.explain import explain
from qastream_sampler.explain_store import PastRetention, explain_state
from qastream_sampler.handlers import make_handler
from qastream_sampler.snapshot_store import load, recorded
from qastream_sampler.store import SamplerStore
from qastream_sampler.tables import inputs, sample_log, snapshot_chunks
from qastream_shared.events import ConversationIngested, Envelope, conversation_key
from qastream_shared.migrations import migrate
from qastream_shared.settings import Settings
from tests.integration.sampler_setup import install_plans
from tests.unit.sampler.sampler_synth import TENANT
from tests.unit.sampler.test_sampler_retention import PLANS, interleave, logs, run

pytestmark = pytest.mark.integration

BATCH = 400
SNAPSHOT_EVERY = 1500


def canonical(d: Decision) -> tuple[Any, ...]:
    return (d.plan_version, d.stratum, d.rule, round(d.inclusion_probability, 9), d.reason, d.decided_at)


async def test_inputs_stay_flat_and_decisions_are_the_unsnapshotted_runs(settings: Settings) -> None:
    runtime = await install_plans(settings, TENANT, PLANS)
    store = SamplerStore(settings, 3, snapshot_every=SNAPSHOT_EVERY)
    store.review_partitions = 3  # the synthetic logs have three partitions per topic
    runtime.components["store"] = store
    handle = make_handler(runtime)

    convs, revs = logs(settings)
    stream = interleave(convs + revs, random.Random(7))
    offsets: dict[tuple[str, int], int] = {}
    with_body: list[int] = []
    for start in range(0, len(stream), BATCH):
        batch = []
        for topic, partition, event in stream[start : start + BATCH]:
            offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
            cid = event.conversation.conversation_id if isinstance(event, ConversationIngested) else ""
            env = Envelope(data=event, source="test", tenant=TENANT, key=conversation_key(TENANT, cid))
            env.origin = (topic, partition, offset)
            batch.append(env)
        async with runtime.unit_of_work() as uow:
            await handle(uow, batch)
        async with runtime.sessions() as s:
            q = select(func.count()).select_from(inputs).where(func.octet_length(inputs.c.body) > 0)
            with_body.append(int((await s.execute(q)).scalar_one()))

    # Flat: after the first late window, the rows holding a body no longer grow with history.
    third = len(with_body) // 3
    settled, late = max(with_body[third : 2 * third]), max(with_body[2 * third :])
    assert late <= settled * 1.15, (settled, late)
    assert with_body[-1] < len(stream) / 3, (with_body[-1], len(stream))  # not vacuous: most went
    async with runtime.sessions() as s:
        assert await recorded(s) == len(stream)  # every input recorded once, compacted or not
        # One snapshot, of the one tenant, in several chunks.
        held = (await s.execute(select(snapshot_chunks.c.tenant_id, snapshot_chunks.c.part))).all()
        assert {t for t, _ in held} == {TENANT} and len(held) > len({p for _, p in held}), held

        # The same decisions as the unsnapshotted, unpruned run over the same logs, in another order.
        full, _ = run(SamplerStore(settings, 3, retain=False), interleave(convs + revs, random.Random(8)))
        logged = {
            (r.conversation_id, r.purpose, r.plan_id): (
                r.plan_version, r.stratum, r.rule, round(r.inclusion_probability, 9), r.reason, r.decided_at
            )
            for r in await s.execute(select(sample_log))
        }  # fmt: skip
        assert logged == {key: canonical(d) for key, d in full.items()}

        # A fresh replica: snapshot + tail gives the live replica's state, and decides nothing new.
        fresh = SamplerStore(settings, 3, snapshot_every=SNAPSHOT_EVERY)
        fresh.review_partitions = 3
        again = await fresh.rebuild(s)
        assert {(d.conversation_id, d.purpose.value, d.plan_id) for _, d in again} <= logged.keys()
        live, rebuilt = store.states[TENANT], fresh.states[TENANT]
        assert rebuilt.conversations == live.conversations and rebuilt.pools == live.pools
        assert rebuilt.log == live.log and rebuilt.pending == live.pending

        # Explain answers from snapshot + tail, as the live replica's state has it.
        recent = sorted(live.conversations)[-40:]
        for cid in recent:
            own = await explain_state(s, settings, TENANT, cid, partitions=3)
            assert explain(own, cid) == explain(live, cid), cid
        # A conversation retention dropped is past explaining, and says so.
        oldest = min(
            (e.conversation.conversation_id for _, _, e in stream if isinstance(e, ConversationIngested)),
        )
        assert oldest not in live.conversations
        with pytest.raises(PastRetention, match="retention"):
            await explain_state(s, settings, TENANT, oldest, partitions=3)
    await runtime.engine.dispose()


async def test_a_format_1_snapshot_is_converted_by_the_migration_and_reads_back_the_same(
    settings: Settings,
) -> None:
    """A schema holding a pickled (format 1) snapshot, as 0003 left it, migrated to head: the state it holds
    comes back unchanged from the chunks, so the inputs it compacted away are not lost."""
    runtime = await install_plans(settings, TENANT, PLANS)
    convs, revs = logs(settings)
    live = SamplerStore(settings, 3)
    run(live, interleave(convs + revs, random.Random(5))[:6000])
    st = live.states[TENANT]
    assert st.conversations and st.pools and st.log and live.highs  # not vacuous

    kept = [
        f.name
        for f in fields(SamplerState)
        if f.name not in {"plans", "plan_versions", "auto_policy", "_active"}
    ]
    own = {
        "cursors": {("qa.conversations", 0): 41},
        "highs": live.highs,
        "review_highs": live.review_highs,
        "pruned_to": live.pruned_to,
        "parked": {k: [(r.model_dump_json(), h) for r, h in v] for k, v in live.parked.items()},
    }
    async with runtime.unit_of_work() as uow:  # 0003's tables and format-1 bodies, as that code wrote them
        await uow.session.execute(text("DROP TABLE snapshot_chunks"))
        await uow.session.execute(
            text("CREATE TABLE snapshots (tenant_id text PRIMARY KEY, body bytea NOT NULL)")
        )
        await uow.session.execute(
            text("INSERT INTO snapshots VALUES (:t, :b)"),
            {"t": TENANT, "b": pickle.dumps({n: getattr(st, n) for n in kept})},
        )
        await uow.session.execute(
            text("INSERT INTO snapshot_mark (id, format, cursors, body, compacted) VALUES (1, 1, :c, :b, 0)"),
            {"c": '[["qa.conversations", 0, 41]]', "b": pickle.dumps(own)},
        )
        await uow.session.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    await migrate(settings, runtime.schema, SPEC.migrations)

    async with runtime.sessions() as s:
        mark, states = await load(s)
    back = states[TENANT]
    assert {n: getattr(back, n) for n in kept} == {n: getattr(st, n) for n in kept}
    assert list(back.pools) == list(st.pools) and list(back.conversations) == list(st.conversations)
    assert (mark.cursors, mark.highs, mark.review_highs, mark.pruned_to, mark.parked) == (
        {("qa.conversations", 0): 41}, live.highs, live.review_highs, live.pruned_to, live.parked
    )  # fmt: skip
    await runtime.engine.dispose()
