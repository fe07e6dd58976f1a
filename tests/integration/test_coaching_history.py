"""The per-process caches on the real database. The history cache with two replicas on one schema: what the
other replica stores (a new review, or a revision) counts in the next batch, as if nothing were cached. The
parsed-rule cache with one process on two schemas: each reads its own rule body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from qastream_coaching import rule_store
from qastream_coaching.app import SPEC
from qastream_coaching.history import history_of
from qastream_coaching.tables import evidence
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import isolated_settings
from tests.integration.coaching_fixtures import EMPATHY_THRICE, FAILED, handle, revised, submitted, with_rules

pytestmark = pytest.mark.integration


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[tuple[ServiceRuntime, ServiceRuntime]]:
    a = await with_rules(settings, [EMPATHY_THRICE])
    b = ServiceRuntime(SPEC, settings)
    yield a, b
    await a.engine.dispose()
    await b.engine.dispose()


async def evidence_of(rt: ServiceRuntime) -> list[str]:
    async with rt.sessions() as s:
        return sorted((await s.execute(select(evidence.c.review_id))).scalars())


async def test_a_review_stored_by_the_other_replica_counts(replicas):
    a, b = replicas
    await handle(a, submitted("acme", "r1", agent="ann", score=0.9, cats=FAILED, day=0))
    assert len(history_of(a)) == 1  # ann is held by a
    await handle(b, submitted("acme", "r2", agent="ann", score=0.9, cats=FAILED, day=1))
    assert await evidence_of(a) == []  # two failures
    await handle(a, submitted("acme", "r3", agent="ann", score=0.9, cats=FAILED, day=2))
    assert await evidence_of(a) == ["r1", "r2", "r3"]  # three, one of them stored by b


async def test_a_revision_stored_by_the_other_replica_counts(replicas):
    a, b = replicas
    await handle(a, submitted("acme", "r1", agent="ann", score=0.9, cats=FAILED, day=0))
    await handle(a, submitted("acme", "r2", agent="ann", score=0.9, cats=FAILED, day=1))
    # b revises r1: empathy no longer failed. a holds the old version of r1.
    await handle(b, revised("acme", "r1", 1, agent="ann", score=0.95, cats={"empathy": 1.0, "greeting": 1.0}))
    await handle(a, submitted("acme", "r3", agent="ann", score=0.9, cats=FAILED, day=2))
    assert await evidence_of(a) == []  # two failures in the window (r2, r3), not three


async def test_one_process_on_two_schemas_reads_each_schemas_own_rule_body(
    database_url: str, kafka_bootstrap: str
) -> None:
    """Same tenant, rule id and version, different bodies: the cache must not hand one schema the other's."""
    stricter = EMPATHY_THRICE.model_copy(update={"k": 5})
    runtimes = [
        await with_rules(isolated_settings(database_url, kafka_bootstrap), [rule])
        for rule in (EMPATHY_THRICE, stricter)
    ]
    try:
        for rt, k in ((runtimes[0], 3), (runtimes[1], 5), (runtimes[0], 3)):
            async with rt.sessions() as s:
                assert (await rule_store.current_rules(s, "acme"))["empathy-thrice"].k == k
    finally:
        for rt in runtimes:
            await rt.engine.dispose()
