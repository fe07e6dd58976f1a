"""The one array builder (qastream_shared.db.array_insert + on_conflict_update) against PostgreSQL:
JSONB from JSON text, a reserved-word column, replace on conflict, keep-first columns, do-nothing."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, text
from sqlalchemy.dialects.postgresql import JSONB

from qastream_shared.db import array_insert, array_params, on_conflict_update
from qastream_shared.testing import schema_with_tables

pytestmark = pytest.mark.integration

meta = MetaData()
things = Table(
    "things",
    meta,
    Column("id", String(16), primary_key=True),
    Column("offset", Integer),  # a reserved word: the builder quotes it
    Column("first_seen", String(16)),
    Column("body", JSONB, nullable=False),
)
COLUMNS = ("id", "offset", "first_seen", "body")


async def test_array_insert_upserts_keeps_first_columns_and_casts_json(settings):
    async with schema_with_tables(settings, things) as engine:
        insert = array_insert(things, COLUMNS)
        upsert = array_insert(
            things, COLUMNS, suffix=on_conflict_update(things, ("id",), COLUMNS, keep=("first_seen",))
        )

        def rows(*items: tuple[str, int, str | None, object]) -> dict[str, list[object]]:
            return array_params(
                COLUMNS,
                [
                    {"id": i, "offset": o, "first_seen": f, "body": orjson.dumps(b).decode()}
                    for i, o, f, b in items
                ],
            )

        async with engine.begin() as conn:
            await conn.execute(insert, rows(("a", 1, "mon", {"x": [1, 2]}), ("b", 2, None, [])))
            await conn.execute(insert, rows(("a", 9, "sun", {"x": "ignored"})))  # DO NOTHING
            await conn.execute(upsert, rows(("b", 5, "tue", {"y": None}), ("c", 3, "wed", "text")))
            await conn.execute(upsert, rows(("a", 7, "fri", {"x": [3]})))
            got = {
                r.id: (r.offset, r.first_seen, r.kind, orjson.loads(r.body))
                for r in await conn.execute(
                    text(
                        'SELECT id, "offset", first_seen, jsonb_typeof(body) AS kind, body::text AS body FROM things'
                    )
                )
            }
        assert got == {
            "a": (7, "mon", "object", {"x": [3]}),  # replaced, but the first day kept
            "b": (5, "tue", "object", {"y": None}),  # NULL first_seen filled by the later row
            "c": (3, "wed", "string", "text"),
        }


async def test_large_values_written_through_an_engine_are_compressed_with_lz4(settings):
    """Every service's sessions compress TOASTed values with lz4 (db._compress_with_lz4), not pglz."""
    async with schema_with_tables(settings, things) as engine:
        body = {
            "turns": [
                {"speaker": "agent", "text": f"turn {n}: how can I help you today?"} for n in range(200)
            ]
        }
        async with engine.begin() as conn:
            await conn.execute(
                array_insert(things, COLUMNS),
                array_params(
                    COLUMNS,
                    [{"id": "big", "offset": 1, "first_seen": None, "body": orjson.dumps(body).decode()}],
                ),
            )
        async with engine.connect() as conn:
            method = (await conn.execute(text("SELECT pg_column_compression(body) FROM things"))).scalar_one()
        assert method == "lz4"
