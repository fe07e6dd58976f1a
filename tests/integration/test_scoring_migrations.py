"""Migrations 0002 to 0004 upgrade a schema that 0001 made before the review workflow existed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import inspect, text

from qastream_scoring.app import SPEC
from qastream_scoring.tables import WORKFLOW_TABLES, reviews
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime

pytestmark = pytest.mark.integration

NEW_COLUMNS = {"revision", "assignment_id", "time_spent_s", "comments", "idempotency_key"}


async def test_0002_adds_the_workflow_to_a_release_one_schema(settings):
    runtime = ServiceRuntime(SPEC, settings)
    await migrate(settings, runtime.schema, SPEC.migrations)
    async with runtime.engine.begin() as conn:
        # Back to what release one had: no workflow tables, reviews without the new columns, at 0001.
        for table in reversed(WORKFLOW_TABLES):
            await conn.execute(text(f"DROP TABLE {table.name}"))
        for column in NEW_COLUMNS:
            await conn.execute(text(f"ALTER TABLE reviews DROP COLUMN {column}"))
        await conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        await conn.execute(
            text(
                "INSERT INTO reviews (review_id, tenant_id, conversation_id, kind, scorecard_id,"
                " scorecard_version, scorer_versions, ratings, auto_failed, submitted_at)"
                " VALUES ('r1', 't', 'c1', 'auto', 'sc', 1, '{}', '[]', false, now())"
            )
        )
    await migrate(settings, runtime.schema, SPEC.migrations)
    async with runtime.engine.connect() as conn:

        def shape(sync_conn: Any) -> tuple[set[str], set[str], set[str | None]]:
            inspector = inspect(sync_conn)
            return (
                set(inspector.get_table_names()),
                {c["name"] for c in inspector.get_columns("reviews")},
                {i["name"] for i in inspector.get_indexes("reviews")},
            )

        names, columns, indexes = await conn.run_sync(shape)
        revision = (
            await conn.execute(text("SELECT revision FROM reviews WHERE review_id = 'r1'"))
        ).scalar_one()
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    await runtime.engine.dispose()
    assert {t.name for t in WORKFLOW_TABLES} <= names
    assert NEW_COLUMNS <= columns
    assert {i.name for i in reviews.indexes} <= indexes
    assert revision == 1 and version == "0004"  # an existing review is its own first revision
