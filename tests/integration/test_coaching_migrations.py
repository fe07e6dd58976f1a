"""Coaching's migrations on a schema that already holds tasks: 0003 and 0004 add columns with defaults, and
a schema stopped at 0002 must come up at head with its tasks as they were and keep working."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from qastream_coaching.app import SPEC
from qastream_coaching.tables import evidence, tasks
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from tests.integration.coaching_fixtures import (
    EMPATHY_THRICE,
    FAILED,
    handle,
    submitted,
    task_state,
    with_rules,
)

pytestmark = pytest.mark.integration


async def test_a_schema_stopped_at_0002_upgrades_with_its_tasks_and_keeps_working(settings: Settings) -> None:
    old = await with_rules(settings, [EMPATHY_THRICE])
    for agent in ("ann", "bob"):
        for day, rid in enumerate(("r1", "r2", "r3")):
            await handle(old, submitted("acme", f"{agent}-{rid}", agent=agent, cats=FAILED, day=day))
    before = await task_state(old)
    assert len(before) == 2  # not vacuous: one task per agent, each with three reviews of evidence
    async with old.unit_of_work() as uow:  # the tables as 0002 left them
        for column in ("withdrawn", "generation", "evidence_seq"):
            await uow.session.execute(text(f"ALTER TABLE tasks DROP COLUMN {column}"))
        await uow.session.execute(text("DROP SEQUENCE evidence_writes"))
        await uow.session.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    await old.engine.dispose()

    await migrate(settings, old.schema, SPEC.migrations)

    rt = ServiceRuntime(SPEC, settings)
    try:
        assert await task_state(rt) == before
        async with rt.sessions() as s:
            rows = (
                await s.execute(select(tasks.c.withdrawn, tasks.c.generation, tasks.c.evidence_seq))
            ).all()
        assert [(w, g) for w, g, _ in rows] == [(False, 0), (False, 0)]
        assert len({seq for _, _, seq in rows}) == 2  # each existing task got its own number
        await handle(rt, submitted("acme", "ann-r4", agent="ann", cats=FAILED, day=3))
        async with rt.sessions() as s:
            ann = (
                await s.execute(select(evidence.c.review_id).where(evidence.c.review_id.like("ann-%")))
            ).scalars()
            assert sorted(ann) == ["ann-r1", "ann-r2", "ann-r3", "ann-r4"]
    finally:
        await rt.engine.dispose()
