"""qa.conversations and qa.reviews → sampling decisions on qa.samples. Thin: validate, record, decide, log."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from qastream_sampler import snapshot_fork
from qastream_sampler.sample_log import publish
from qastream_sampler.store import SamplerStore, conversation_of
from qastream_shared.conversation import Conversation
from qastream_shared.events import (
    ConversationIngested,
    Envelope,
    PartitionHeartbeat,
    ReviewRevised,
    ReviewSubmitted,
)
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.topics import CONVERSATIONS, REGISTRY, REVIEWS, physical
from qastream_shared.unit_of_work import Handler, Rejected, UnitOfWork

log = logging.getLogger(__name__)
REAP_EVERY_S = 0.1


def store_of(runtime: ServiceRuntime) -> SamplerStore:
    store = runtime.components.get("store")
    if store is None:
        default = next(t.partitions for t in REGISTRY if t.name == CONVERSATIONS)
        store = runtime.components["store"] = SamplerStore(runtime.settings, default)
    assert isinstance(store, SamplerStore)
    return store


def make_handler(runtime: ServiceRuntime) -> Handler:
    store = store_of(runtime)

    async def handle(uow: UnitOfWork, events: list[Envelope]) -> None:
        """Admission (ServiceSpec.accepts) has let through only the declared types, of known tenants."""
        if runtime.consumer is not None and runtime.consumer.consumer is not None:
            parts = runtime.consumer.consumer.partitions_for_topic(physical(CONVERSATIONS, runtime.settings))
            if parts:
                store.partitions = len(parts)
            parts = runtime.consumer.consumer.partitions_for_topic(physical(REVIEWS, runtime.settings))
            if parts:
                store.review_partitions = len(parts)
        async with store.lock:
            decisions = await store.catch_up(uow.session)
            batch: dict[tuple[str, str], Conversation] = {}
            traces: dict[tuple[str, str], str | None] = {}
            ingested: dict[tuple[str, str], bytes] = {}
            for env in events:
                if isinstance(env.data, ConversationIngested):
                    key = (env.tenant, env.data.conversation.conversation_id)
                    batch[key] = env.data.conversation
                    traces[key] = env.traceparent
                    ingested[key] = env.value()
            # Feedback about a conversation whose facts retention dropped is too late to count, not unknown.
            await store.resolve_retired(
                uow.session,
                {
                    (env.tenant, conversation_of(env.data))
                    for env in events
                    if store.unknown(env.tenant, env.data)
                    and (env.tenant, conversation_of(env.data)) not in batch
                },
            )
            relevant = []
            rejected: dict[str, str] = {}
            for env in events:
                if isinstance(env.data, ReviewRevised):
                    continue  # revisions of human reviews never trigger sampling
                if isinstance(env.data, PartitionHeartbeat):
                    relevant.append(env)
                    continue
                cid = conversation_of(env.data)
                if (
                    not isinstance(env.data, ConversationIngested | ReviewSubmitted)
                    and (env.tenant, cid) not in batch
                    and not store.knows(env.tenant, cid)
                    and (env.tenant, cid) not in store.retired
                ):
                    # CSAT and updates share the conversation's partition, so it must have come first.
                    rejected[env.id] = (
                        f"missing conversation {cid!r}: {env.type} for a conversation never ingested"
                    )
                    continue
                relevant.append(env)
            if rejected and not decisions:
                # Nothing in memory differs from the database yet, so the cache survives the rollback.
                raise Rejected(many=rejected)
            # From here the cache runs ahead of the database until commit; a rollback must drop it.
            uow.on_rollback.append(lambda: setattr(store, "stale", True))
            if rejected:
                raise Rejected(many=rejected)
            await store.record(uow, relevant)
            for env in relevant:
                assert env.origin is not None
                decisions += store.apply(env.origin[0], env.origin[1], env.data, env.tenant)
            store.retired = set()
            decisions += store.close_due()
            await publish(uow, decisions, batch, traces, ingested)
            if store.snapshot_due():
                uow.on_commit.append(lambda: fork_snapshot(runtime, store))

    return handle


def fork_snapshot(runtime: ServiceRuntime, store: SamplerStore) -> None:
    """Right after a batch's commit, before anything else can change the state: a child writes it. Not while
    the idle tick holds the state (its changes may not have committed yet): the next batch's end tries again."""
    if store.lock.locked() or store.writer is not None or store.stale:
        return
    store.writer = snapshot_fork.start(store, runtime.settings, runtime.schema)
    store.recorded_since = 0


async def reap_snapshots(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    """Waits for each snapshot's child; after a failed one the next batch's end forks again."""
    store = store_of(runtime)
    while not (stop.is_set() and store.writer is None):
        await asyncio.sleep(REAP_EVERY_S)
        snapshot_written(store)


def snapshot_written(store: SamplerStore) -> bool:
    """Reaps the store's snapshot child if it has exited; True once none is running."""
    if store.writer is None:
        return True
    status = snapshot_fork.finished(store.writer)
    if status is None:
        return False
    store.writer = None
    if status == snapshot_fork.SUPERSEDED:
        log.info("sampler snapshot not written: another replica's covers more")
    elif status != snapshot_fork.WRITTEN:
        log.warning("sampler snapshot failed (child status %s): owed again", status)
        store.recorded_since = max(store.recorded_since, store.snapshot_every)
    return True


async def idle_tick(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    """Every second, catch up with other replicas' inputs and close due slots even when no record arrives,
    so the last quota slots before a quiet period are decided without waiting for new traffic."""
    store = store_of(runtime)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        if stop.is_set() or store.stale:
            continue  # the consumer's next batch rebuilds; a tick never races it
        try:
            # The lock until the commit: a snapshot forked meanwhile would take uncommitted changes.
            async with store.lock, runtime.unit_of_work() as uow:
                uow.on_rollback.append(lambda: setattr(store, "stale", True))
                decisions = await store.catch_up(uow.session) + store.close_due()
                await publish(uow, decisions, {})
        except Exception as exc:  # the database may be away; the consumer path reports and retries that
            log.warning("sampler idle tick failed: %r", exc)
