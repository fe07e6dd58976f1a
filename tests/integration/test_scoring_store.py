"""Scoring's batch writes: one statement text whatever the batch size, and what it stores reads back."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, select

from qastream_scoring import service
from qastream_scoring.app import SPEC
from qastream_scoring.autoqa_runner import AutoQARunner
from qastream_scoring.tables import conversations, reviews
from qastream_shared.conversation import Conversation
from qastream_shared.events import ReviewSubmitted, decode
from qastream_shared.migrations import migrate
from qastream_shared.outbox import unpack_headers
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.testing import star_records

pytestmark = pytest.mark.integration


async def test_batches_of_any_size_store_conversations_and_reviews_with_one_statement_each(settings):
    runtime = ServiceRuntime(SPEC, settings)
    await migrate(settings, runtime.schema, SPEC.migrations)
    statements: list[str] = []
    executemany: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        statements.append(statement)
        if many:
            executemany.append(statement)

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", seen)
    runner = AutoQARunner.from_env()
    convs = [Conversation.model_validate(r) for r in list(star_records())[:10]]
    try:
        for batch in (convs[:1], convs[1:4], convs[4:10], convs[:4]):  # the last one a redelivery
            async with runtime.unit_of_work() as uow:
                await service.store_conversations(uow, "acme", batch)
                settings_, card = await service.config(uow, "acme")
                items = [(c, 1.0, None) for c in batch]
                await service.auto_reviews(uow, "acme", items, settings=settings_, card=card, runner=runner)
        # An INSERT … VALUES of as many rows as the batch was a new statement to compile, prepare and plan
        # for every batch size (SQLAlchemy's insertmanyvalues, for the RETURNING of new reviews), and an
        # executemany binds and converts every row in Python: one statement of arrays per batch instead.
        inserts = {s for s in statements if s.lstrip().upper().startswith("INSERT INTO")}
        assert len({s for s in inserts if "conversations" in s.split("(")[0]}) == 1
        assert len({s for s in inserts if "reviews" in s.split("(")[0]}) == 1
        assert executemany == []

        async with runtime.sessions() as s:
            bodies = dict(
                (await s.execute(select(conversations.c.conversation_id, conversations.c.body))).all()
            )
            stored = (await s.execute(select(reviews).order_by(reviews.c.conversation_id))).mappings().all()
            outbox = (await s.execute(select(runtime.tables["outbox"]))).mappings().all()
        assert {k: Conversation.model_validate_json(v) for k, v in bodies.items()} == {
            c.conversation_id: c for c in convs
        }
        # One review per conversation, published once: the redelivered batch adds nothing.
        events = [decode(r["key"], r["value"], unpack_headers(r["headers"])).data for r in outbox]
        published = [e for e in events if isinstance(e, ReviewSubmitted)]  # beside the default card's
        assert sorted(e.conversation_id for e in published) == sorted(c.conversation_id for c in convs)
        by_id = {e.review_id: e for e in published}
        assert {r["review_id"] for r in stored} == set(by_id)
        for row in stored:
            ev = by_id[row["review_id"]]
            assert row["ratings"] == [r.model_dump(mode="json", exclude_none=True) for r in ev.ratings]
            assert row["pcsat"] == (ev.pcsat.model_dump(mode="json") if ev.pcsat else None)
            assert (row["score"], row["passed"], row["agent_id"]) == (ev.score, ev.passed, ev.agent_id)
        async with runtime.sessions() as s:
            assert (await s.execute(select(func.count()).select_from(reviews))).scalar_one() == len(convs)
    finally:
        await runtime.engine.dispose()
