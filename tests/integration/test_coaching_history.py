"""The per-process history cache with two replicas on one schema, on the real database: what the other
replica stores (a new review, or a revision) counts in the next batch, as if nothing were cached."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from qastream_coaching import store
from qastream_coaching.app import SPEC
from qastream_coaching.handlers import make_handler
from qastream_coaching.history import history_of
from qastream_coaching.rules import Rule
from qastream_coaching.tables import evidence
from qastream_shared.events import Envelope
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from tests.integration.coaching_fixtures import revised, submitted

pytestmark = pytest.mark.integration

EMPATHY_THRICE = Rule(
    rule_id="empathy-thrice",
    trigger="category_failures",
    category_id="empathy",
    k=3,
    window_days=7,
    title="t",
)
FAILED = {"empathy": 0.25, "greeting": 1.0}


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[tuple[ServiceRuntime, ServiceRuntime]]:
    a, b = ServiceRuntime(SPEC, settings), ServiceRuntime(SPEC, settings)
    await migrate(settings, a.schema, SPEC.migrations)
    async with a.unit_of_work() as uow:
        await store.save_rule(uow.session, "acme", EMPATHY_THRICE)
    yield a, b
    await a.engine.dispose()
    await b.engine.dispose()


async def handle(rt: ServiceRuntime, *events: Envelope) -> None:
    """One batch through the service's handler, as its consumer would run it."""
    handler = rt.components.setdefault("handler", make_handler(rt))
    async with rt.unit_of_work() as uow:
        await handler(uow, list(events))


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
