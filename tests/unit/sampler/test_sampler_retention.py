"""Retention keeps the sampler's state flat over many periods and never changes a decision; nor does
restarting from a snapshot of that state."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from qastream_sampler.decisions import Decision
from qastream_sampler.engine import snapshot as codec
from qastream_sampler.plans import parse_plan
from qastream_sampler.snapshot_store import mark_body, mark_of, mark_of_store
from qastream_sampler.store import SamplerStore
from qastream_shared.events import (
    CsatRecorded,
    Event,
    Rating,
    ReviewKind,
    ReviewSubmitted,
)
from qastream_shared.settings import Settings
from qastream_shared.topics import CONVERSATIONS, REVIEWS, physical
from tests.unit.sampler.sampler_synth import T0, TENANT, conversation, partition_of

WEEKS = 30
PER_DAY = 40
PLANS = [
    {"plan_id": "random5", "kind": "random", "rate": 0.05, "priority": 10},
    {
        "plan_id": "weekly",
        "kind": "stratified",
        "by": "agent",
        "quota": 3,
        "slots": 3,
        "period": "week",
        "priority": 20,
    },
    {"plan_id": "daily", "kind": "stratified", "by": "team", "quota": 2, "period": "day", "priority": 25},
    {
        "plan_id": "unhappy",
        "kind": "targeted",
        "rules": [{"kind": "csat_at_most", "max": 2}],
        "fallback": {"per": "team", "min_per_period": 1, "period": "week"},
        "priority": 30,
    },
    {
        "plan_id": "low-auto",
        "kind": "targeted",
        "rules": [{"kind": "auto_score_below", "threshold": 0.3}],
        "priority": 40,
    },
    {
        "plan_id": "onboarding",
        "kind": "targeted",
        "rules": [{"kind": "new_agent", "days": 7}],
        "rate": 0.5,
        "priority": 50,
    },
]
Topic = str
Record = tuple[Topic, int, Event]


def review(cid: str, at: datetime, score: float) -> ReviewSubmitted:
    return ReviewSubmitted(
        review_id=f"r-{cid}",
        conversation_id=cid,
        kind=ReviewKind.auto,
        scorecard_id="customer-service",
        scorecard_version=1,
        ratings=[Rating(category_id="greeting", value=1, score=score)],
        score=score,
        auto_failed=False,
        submitted_at=at,
    )


def logs(settings: Settings, seed: int = 1) -> tuple[list[list[Record]], list[list[Record]]]:
    """Per-partition logs of both topics: WEEKS weeks of conversations (agents joining over time), CSAT
    hours later on the conversation's partition, an auto review minutes later on the same-numbered review
    partition. Each partition in event-time order, with up to 20 minutes of disorder."""
    rng = random.Random(seed)
    conv_topic, rev_topic = physical(CONVERSATIONS, settings), physical(REVIEWS, settings)
    convs: list[list[tuple[datetime, Record]]] = [[], [], []]
    revs: list[list[tuple[datetime, Record]]] = [[], [], []]
    for i in range(WEEKS * 7 * PER_DAY):
        t = T0 + timedelta(days=i / PER_DAY, minutes=rng.random() * 20)
        agents = 8 + i // (PER_DAY * 14)  # a new agent every other week
        a = rng.randrange(agents)
        cid = f"c{i:06d}"
        p = partition_of(cid)
        convs[p].append((t, (conv_topic, p, conversation(cid, t, agent=f"a{a:03d}", team=f"team{a % 3}"))))
        if rng.random() < 0.2:
            at = t + timedelta(hours=rng.random() * 30)
            csat = CsatRecorded(conversation_id=cid, csat=rng.randint(1, 5), recorded_at=at)
            convs[p].append((at, (conv_topic, p, csat)))
        at = t + timedelta(minutes=1 + rng.random() * 10)
        revs[p].append((at, (rev_topic, p, review(cid, at, round(rng.random(), 3)))))
    return [[r for _, r in sorted(part, key=lambda x: x[0])] for part in convs], [
        [r for _, r in sorted(part, key=lambda x: x[0])] for part in revs
    ]


def interleave(parts: list[list[Record]], rng: random.Random) -> list[Record]:
    """One consumer's view: partitions merged in a random order that keeps each partition's own order."""
    cursors = [0] * len(parts)
    out: list[Record] = []
    while any(c < len(p) for c, p in zip(cursors, parts, strict=True)):
        i = rng.choice([i for i, p in enumerate(parts) if cursors[i] < len(p)])
        take = rng.randint(1, 200)
        out += parts[i][cursors[i] : cursors[i] + take]
        cursors[i] += take
    return out


def size(store: SamplerStore) -> int:
    st = store.states[TENANT]
    return (
        len(st.conversations)
        + len(st.log)
        + len(st.pending)
        + sum(len(pool.candidates) for pool in st.pools.values())
    )


def with_plans(store: SamplerStore) -> SamplerStore:
    st = store.state(TENANT)
    for body in PLANS:
        st.put_plan(parse_plan(body))
    return store


def from_snapshot(store: SamplerStore) -> SamplerStore:
    """A new store from a snapshot of `store`, through the bytes the snapshot tables hold."""
    cursors = [[t, p, o] for (t, p), o in sorted(store.cursors.items())]
    mark = mark_of(cursors, mark_body(mark_of_store(store)))
    fresh = SamplerStore(store.settings, store.partitions)
    fresh.restore(mark, {tenant: codec.load(tenant, codec.chunks(st)) for tenant, st in store.states.items()})
    return with_plans(fresh)  # plans live in their own table, not in the snapshot


def run(
    store: SamplerStore, stream: list[Record], snapshot_every: int | None = None
) -> tuple[dict[tuple[str, str, str], Decision], list[int]]:
    """Applies the stream, closing every 500 records; with `snapshot_every` (a multiple of 500), carries on
    from a snapshot instead of the live store each time, as a restarted replica does."""
    store = with_plans(store)
    decisions: list[tuple[str, Decision]] = []
    sizes: list[int] = []
    for n, (topic, partition, event) in enumerate(stream, 1):
        decisions += store.apply(topic, partition, event, TENANT)
        if n % 500 == 0:
            decisions += store.close_due()
            sizes.append(size(store))
        if snapshot_every and n % snapshot_every == 0:
            store = from_snapshot(store)
    decisions += store.close_due()
    out: dict[tuple[str, str, str], Decision] = {}
    for _, d in decisions:
        out.setdefault((d.conversation_id, d.purpose.value, d.plan_id), d)
    return out, sizes


def test_state_stays_flat_over_many_periods_and_every_pick_is_the_unpruned_runs() -> None:
    settings = Settings()
    convs, revs = logs(settings)
    pruned, pruned_sizes = run(SamplerStore(settings, 3), interleave(convs + revs, random.Random(1)))
    full, full_sizes = run(
        SamplerStore(settings, 3, retain=False), interleave(convs + revs, random.Random(2))
    )

    assert pruned == full  # the same decisions, each with the same stratum, probability and reason
    kinds = {d.plan_id for d in full.values()}
    assert kinds >= {"weekly", "daily", "unhappy", "low-auto", "onboarding", "random5"}  # not vacuous

    # Flat: after the first late window has passed, the state no longer grows with history.
    third = len(pruned_sizes) // 3
    settled, late = max(pruned_sizes[third : 2 * third]), max(pruned_sizes[2 * third :])
    assert late <= settled * 1.15, (settled, late)
    assert full_sizes[-1] > 4 * pruned_sizes[-1], (full_sizes[-1], pruned_sizes[-1])  # the unpruned one grows


def test_carrying_on_from_snapshots_decides_as_the_unsnapshotted_run() -> None:
    settings = Settings()
    convs, revs = logs(settings)
    stream = interleave(convs + revs, random.Random(3))
    snapshotted, _ = run(SamplerStore(settings, 3), stream, snapshot_every=1000)
    full, _ = run(SamplerStore(settings, 3, retain=False), interleave(convs + revs, random.Random(4)))

    assert snapshotted == full
    assert {d.plan_id for d in full.values()} >= {"weekly", "daily", "unhappy", "onboarding"}
    assert len(stream) > 15 * 1000  # not vacuous: the run carries on from more than 15 snapshots
