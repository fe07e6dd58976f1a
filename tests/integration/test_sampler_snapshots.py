"""The sampler's state snapshots on the real database: over 30 weeks of synthetic traffic the `inputs` table
stays flat, every decision is the unsnapshotted run's, a fresh replica rebuilds from snapshot + tail, and
explain still answers from them; a snapshot written while later batches run holds exactly the inputs up to
its cursors and compacts none after them.

The consumer's handler runs in-process on batches of records with their (topic, partition, offset), as the
shared consumer hands them over, and each snapshot's child is awaited as the service's reaper does: what is
under test is the store and its tables, not the broker."""

from __future__ import annotations

import asyncio
import itertools
import pickle
import random
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import pytest
from sqlalchemy import func, select, text

from qastream_sampler import snapshot_store
from qastream_sampler.app import SPEC
from qastream_sampler.decisions import Decision
from qastream_sampler.engine import SamplerState
from qastream_sampler.engine import snapshot as codec
from qastream_sampler.explain import explain
from qastream_sampler.explain_store import PastRetention, explain_state
from qastream_sampler.handlers import make_handler, snapshot_written
from qastream_sampler.snapshot_store import covered, covered_params, load, mark_body, mark_of_store, recorded
from qastream_sampler.store import SamplerStore
from qastream_sampler.tables import inputs, sample_log, snapshot_chunks, snapshot_mark
from qastream_shared.events import ConversationIngested, Envelope, ReviewSubmitted, conversation_key
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.unit_of_work import Handler
from tests.integration.sampler_setup import install_plans
from tests.unit.sampler.sampler_synth import TENANT
from tests.unit.sampler.test_sampler_retention import PLANS, interleave, logs, run

pytestmark = pytest.mark.integration

BATCH = 400
SNAPSHOT_EVERY = 1500


def canonical(d: Decision) -> tuple[Any, ...]:
    return (d.plan_version, d.stratum, d.rule, round(d.inclusion_probability, 9), d.reason, d.decided_at)


def batches(settings: Settings, stream: list[Any]) -> Iterator[list[Envelope]]:
    """The stream as the consumer hands it over: batches of BATCH envelopes with their origins."""
    offsets: dict[tuple[str, int], int] = {}
    for start in range(0, len(stream), BATCH):
        batch = []
        for topic, partition, event in stream[start : start + BATCH]:
            offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
            cid = event.conversation.conversation_id if isinstance(event, ConversationIngested) else ""
            env = Envelope(data=event, source="test", tenant=TENANT, key=conversation_key(TENANT, cid))
            env.origin = (topic, partition, offset)
            batch.append(env)
        yield batch


async def written(store: SamplerStore) -> None:
    """Awaits the snapshot's child, as the service's reaper does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while not snapshot_written(store):
        assert loop.time() < deadline, "snapshot child still running after 120 s"
        await asyncio.sleep(0.01)


async def sampler_on(settings: Settings) -> tuple[ServiceRuntime, SamplerStore, Handler]:
    """A sampler runtime with the plans installed, its store (snapshots every SNAPSHOT_EVERY inputs) and handler."""
    runtime = await install_plans(settings, TENANT, PLANS)
    store = SamplerStore(settings, 3, snapshot_every=SNAPSHOT_EVERY)
    store.review_partitions = 3  # the synthetic logs have three partitions per topic
    runtime.components["store"] = store
    return runtime, store, make_handler(runtime)


async def test_inputs_stay_flat_and_decisions_are_the_unsnapshotted_runs(settings: Settings) -> None:
    runtime, store, handle = await sampler_on(settings)

    convs, revs = logs(settings)
    stream = interleave(convs + revs, random.Random(7))
    with_body: list[int] = []
    for batch in batches(settings, stream):
        async with runtime.unit_of_work() as uow:
            await handle(uow, batch)
        await written(store)
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


async def test_explain_reads_again_when_a_snapshot_commits_during_its_read(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another replica's snapshot commits between explain's read of the previous snapshot and its read of the
    inputs after it, and compacts reviews explain needs: explain must read again, not answer without them."""
    runtime, store, handle = await sampler_on(settings)
    convs, revs = logs(settings)
    for batch in itertools.islice(batches(settings, interleave(convs + revs, random.Random(7))), 11):
        async with runtime.unit_of_work() as uow:
            await handle(uow, batch)
        await written(store)
    # 11 batches of 400 with a snapshot due every 1,500 inputs: written after the 4th and the 8th batch, so the
    # 1,200 inputs after it are stored as they came.
    assert store.recorded_since > 0
    live = store.states[TENANT]
    async with runtime.sessions() as s:
        after = covered_params(await covered(s))
        assert after["heads"]
        reviewed = set(
            (
                await s.execute(
                    text(
                        "SELECT i.conversation_id FROM inputs i JOIN unnest(CAST(:topics AS text[]),"
                        " CAST(:parts AS int[]), CAST(:heads AS bigint[])) AS c(t, p, h)"
                        " ON i.topic = c.t AND i.partition = c.p WHERE i.offset > c.h AND i.ce_type = :review"
                    ),
                    {**after, "review": ReviewSubmitted.TYPE},
                )
            ).scalars()
        )
    # Its auto review is among the inputs after the snapshot, so a compaction under the read would lose it.
    cid = max(c for c in reviewed if c in live.conversations and live.conversations[c].auto_score is not None)

    original = snapshot_store.load
    snapshots: list[bool] = []  # what each snapshot written under the read returned

    async def load_then_another_snapshot(session: Any, tenant_id: str | None = None) -> Any:
        loaded = await original(session, tenant_id)
        if not snapshots:
            async with runtime.unit_of_work() as uow:
                snapshots.append(await snapshot_store.save(uow.session, store))
        return loaded

    monkeypatch.setattr(snapshot_store, "load", load_then_another_snapshot)
    async with runtime.sessions() as s:
        own = await explain_state(s, settings, TENANT, cid, partitions=3)
    assert snapshots == [True]
    assert own.conversations[cid] == live.conversations[cid]
    assert explain(own, cid) == explain(live, cid)
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


async def test_a_snapshot_written_while_later_batches_run_holds_exactly_the_inputs_up_to_its_cursors(
    settings: Settings,
) -> None:
    """Each snapshot is forked at a batch's commit and awaited only after the next batch has changed the
    live state: its chunks and mark must be byte for byte the state at the batch end its cursors name (not
    a later one), and every input after its cursors must still be stored, so that snapshot + tail rebuilds
    the live state."""
    runtime, store, handle = await sampler_on(settings)
    convs, revs = logs(settings)
    stream = interleave(convs + revs, random.Random(11))[:12_000]

    at_batch_end: dict[tuple[tuple[str, int, int], ...], tuple[list[tuple[str, int, str, bytes]], bytes]] = {}
    received: list[tuple[str, int, int, str]] = []  # (topic, partition, offset, ce_type) of every input
    forked_before = False
    checked = 0
    for batch in batches(settings, stream):
        async with runtime.unit_of_work() as uow:
            await handle(uow, batch)
        received += [(*env.origin, env.type) for env in batch if env.origin is not None]
        at_batch_end[tuple(sorted((t, p, o) for (t, p), o in store.cursors.items()))] = (
            [
                (tenant, seq, part, body)
                for tenant, st in sorted(store.states.items())
                for seq, (part, body) in enumerate(codec.chunks(st))
            ],
            mark_body(mark_of_store(store)),
        )
        if forked_before:  # forked at the previous batch's commit; this batch ran while it wrote
            await written(store)
            await check_snapshot(runtime, store, at_batch_end, received)
            checked += 1
        forked_before = store.writer is not None
    await written(store)
    assert checked >= 4, checked  # not vacuous: several snapshots, each with a batch run beside it
    await runtime.engine.dispose()


async def check_snapshot(
    runtime: Any,
    store: SamplerStore,
    at_batch_end: dict[tuple[tuple[str, int, int], ...], tuple[list[tuple[str, int, str, bytes]], bytes]],
    received: list[tuple[str, int, int, str]],
) -> None:
    async with runtime.sessions() as s:
        cursors, body = (await s.execute(select(snapshot_mark.c.cursors, snapshot_mark.c.body))).one()
        key = tuple(sorted((t, p, o) for t, p, o in cursors))
        assert key in at_batch_end, f"snapshot cursors {key} are no batch's end"
        chunks, mark = at_batch_end[key]
        stored = (
            await s.execute(
                select(
                    snapshot_chunks.c.tenant_id,
                    snapshot_chunks.c.seq,
                    snapshot_chunks.c.part,
                    snapshot_chunks.c.body,
                ).order_by(snapshot_chunks.c.tenant_id, snapshot_chunks.c.seq)
            )
        ).all()
        assert [tuple(r) for r in stored] == chunks, "the snapshot's state is not the state at its cursors"
        assert bytes(body) == mark
        # Nothing after the cursors was compacted: every input past them is still stored.
        covered = {(t, p): o for t, p, o in cursors}
        after = {(t, p, o) for t, p, o, _ in received if o > covered.get((t, p), -1)}
        kept = {
            (t, p, o)
            for t, p, o in (await s.execute(select(inputs.c.topic, inputs.c.partition, inputs.c.offset)))
        }
        assert after <= kept, f"{len(after - kept)} inputs after the snapshot's cursors compacted away"
        # So snapshot + tail is the live state.
        fresh = SamplerStore(runtime.settings, 3, snapshot_every=SNAPSHOT_EVERY)
        fresh.review_partitions = 3
        await fresh.rebuild(s)
        live, rebuilt = store.states[TENANT], fresh.states[TENANT]
        assert rebuilt.conversations == live.conversations and rebuilt.pools == live.pools
        assert rebuilt.log == live.log and rebuilt.pending == live.pending
