"""Async SQLAlchemy engines and sessions: one Postgres schema per service, selected by search_path.

Engines are built by the app at start-up, never at import time (polar's pattern): tests point a
fresh engine at a throw-away schema without touching globals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, TextClause, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from qastream_shared.settings import Settings

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema(schema: str) -> str:
    """Schemas are interpolated into DDL and search_path, so only plain identifiers are allowed."""
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"invalid schema name {schema!r}: use lowercase letters, digits and _")
    return schema


def create_engine(settings: Settings, schema: str, *, pool_size: int = 10) -> AsyncEngine:
    check_schema(schema)
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # A restarted PostgreSQL leaves dead pooled connections behind; ping before use.
        pool_pre_ping=True,
        connect_args={"server_settings": {"search_path": schema}, "command_timeout": 60},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ensure_schema(engine: AsyncEngine, schema: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{check_schema(schema)}"'))


async def drop_schema(engine: AsyncEngine, schema: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{check_schema(schema)}" CASCADE'))


def array_insert(
    table: Table, columns: Sequence[str], *, suffix: str = "ON CONFLICT DO NOTHING"
) -> TextClause:
    """`INSERT … SELECT * FROM unnest(one array per column) <suffix>` for the hot write paths.

    One statement text and one parameter per column, whatever the number of rows: an executemany binds and
    converts every value of every row in Python first, which cost more than PostgreSQL's insert itself.
    Pass the rows through `array_params`.
    """
    dialect = postgresql.dialect()
    arrays = ", ".join(f"CAST(:{c} AS {table.c[c].type.compile(dialect=dialect)}[])" for c in columns)
    names = ", ".join(dialect.identifier_preparer.quote(c) for c in columns)
    return text(f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays}) {suffix}")


def array_params(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {c: [row[c] for row in rows] for c in columns}
