"""The projection reads a batch's conversations by primary key on every batch, whatever the table's
statistics: a generic plan made while the table was small scanned all of it for each batch."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_reporting.projection import _LOAD_CONVERSATIONS, load_states
from qastream_reporting.tables import conversations, reviews
from qastream_shared.testing import schema_with_tables

pytestmark = pytest.mark.integration


async def test_a_batch_loads_its_conversations_by_key_even_under_a_plan_made_for_a_small_table(settings):
    async with schema_with_tables(settings, conversations, reviews) as engine:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO conversations (tenant_id, conversation_id, day, agent_id, channel) "
                    "SELECT 'acme', 'c-' || g, DATE '2026-01-05', 'a-' || g % 7, 'chat' "
                    "FROM generate_series(1, 1000) AS g"
                )
            )
            await conn.execute(text("ANALYZE conversations"))
        keys = [("acme", f"c-{n}") for n in range(0, 300, 10)] + [("other", "c-10")]
        params = {"t": [k[0] for k in keys], "c": [k[1] for k in keys]}
        async with AsyncSession(engine) as session, session.begin():
            # The plan a prepared statement settles on after its first executions: made without the keys.
            await session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
            plan = "\n".join(
                (await session.execute(text(f"EXPLAIN {_LOAD_CONVERSATIONS.text}"), params)).scalars()
            )
            states = await load_states(session, keys)
        assert "Seq Scan on conversations" not in plan, plan
        assert "Index Scan using conversations_pkey" in plan, plan
        found = {k for k, s in states.items() if s.conversation is not None}
        assert found == {("acme", f"c-{n}") for n in range(10, 300, 10)}  # c-0 and another tenant's: none
        loaded = states[("acme", "c-20")].conversation
        assert loaded is not None and loaded.agent_id == "a-6"
