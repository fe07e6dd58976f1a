"""End to end: all five services as separate processes on the real broker and database.

Real STAR conversations go in through ingest's HTTP API; the settled state read back through the services'
APIs must be what the inputs, the sampling plan and the coaching rule imply (`Snapshot.check`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from qastream_shared.settings import Settings
from tests.integration.conftest import Proc
from tests.integration.pipeline import Pipeline, conversations

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 60


@pytest.fixture
async def pipeline(settings: Settings, spawn: type[Proc]) -> AsyncIterator[Pipeline]:
    p = Pipeline(settings, spawn)
    try:
        await p.up()
        yield p
    finally:
        p.stop()


async def test_conversations_through_all_five_services(pipeline: Pipeline) -> None:
    convs = conversations(N)
    await pipeline.post(convs)
    snap = await pipeline.settled()
    snap.check([c["conversation_id"] for c in convs])
    assert any(r[3] is False for r in snap.reviews) and snap.tasks, (
        "the rule never fired: the test proves little"
    )
    assert snap.assignments, "the plan picked nothing: the test proves little"
