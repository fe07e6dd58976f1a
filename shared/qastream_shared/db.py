"""Async SQLAlchemy engines and sessions: one Postgres schema per service, selected by search_path.

Engines are built by the app at start-up, never at import time (polar's pattern): tests point a
fresh engine at a throw-away schema without touching globals.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import asyncpg
from sqlalchemy import Table, TextClause, event, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only

from qastream_shared.settings import Settings

log = logging.getLogger(__name__)

_DIALECT = postgresql.dialect()
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema(schema: str) -> str:
    """Schemas are interpolated into DDL and search_path, so only plain identifiers are allowed."""
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"invalid schema name {schema!r}: use lowercase letters, digits and _")
    return schema


def create_engine(settings: Settings, schema: str, *, pool_size: int = 10) -> AsyncEngine:
    check_schema(schema)
    engine = create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping before every checkout: it was a round trip on every request. Connections are replaced
        # after db_pool_recycle_s, a connection whose server end closed is dropped at checkout for free
        # (`_drop_closed`), and one that fails in use invalidates the pool, so the requests after it reconnect
        # (the failed one answers 503, http.py; a consumer batch retries, transient.py).
        pool_pre_ping=False,
        pool_recycle=settings.db_pool_recycle_s,
        connect_args={
            # The application name tells whose connections are whose in pg_stat_activity.
            "server_settings": {"search_path": schema, "application_name": f"qastream:{schema}"},
            "command_timeout": 60,
        },
    )
    event.listen(engine.sync_engine, "connect", _compress_with_lz4)
    event.listen(engine.sync_engine, "checkout", _drop_closed)
    event.listen(engine.sync_engine, "commit", _note_commit)
    event.listen(engine.sync_engine, "after_cursor_execute", _note_autocommit_write)
    return engine


def _compress_with_lz4(dbapi_connection: Any, record: Any) -> None:
    """Values PostgreSQL compresses (rows over ~2 KB: conversation bodies, events in the outbox, reviews) are
    compressed with lz4 instead of pglz: pglz was ~28% of PostgreSQL's CPU in the pipeline at a held 400/s
    (perf), lz4 costs about half as much per stored conversation for 6% more bytes. Set per session, so
    every table and column of every service follows without a migration; a server without lz4 (built
    without it, or before PostgreSQL 14) keeps pglz."""
    try:
        await_only(dbapi_connection.driver_connection.execute("SET default_toast_compression = lz4"))
    except asyncpg.PostgresError as exc:
        log.info("PostgreSQL keeps its default TOAST compression: %s", exc)


class Attempt:
    """One run of a request: whether it has committed anything yet (then it must not be run again)."""

    committed = False


# Set per request by http.RetryDeadConnection; database commits made on the request's behalf mark it.
attempt_var: ContextVar[Attempt | None] = ContextVar("qa_db_attempt", default=None)


def _note_commit(conn: Any) -> None:
    if (attempt := attempt_var.get()) is not None:
        attempt.committed = True


def _note_autocommit_write(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    """Without a transaction a write commits as it runs. Any statement but a compiled SELECT counts."""
    if context.execution_options.get("isolation_level") != "AUTOCOMMIT":
        return
    if context.compiled is None or not getattr(context.compiled.statement, "is_select", False):
        _note_commit(conn)


def _drop_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled connection that asyncpg already knows is closed (PostgreSQL restarted or ended the backend:
    the socket was closed under it) is discarded and the checkout retried with a new one; no round trip."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("pooled connection closed by the server")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def reader_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for read-only work: autocommit, so no BEGIN and COMMIT round trips around the reads (each
    statement is its own snapshot). Same pool as `session_factory`."""
    return async_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)


async def ensure_schema(engine: AsyncEngine, schema: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{check_schema(schema)}"'))


async def drop_schema(engine: AsyncEngine, schema: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{check_schema(schema)}" CASCADE'))


def array_insert(
    table: Table, columns: Sequence[str], *, suffix: str = "ON CONFLICT DO NOTHING"
) -> TextClause:
    """`INSERT … SELECT FROM unnest(one array per column) <suffix>`: the one builder of the hot write paths.

    One statement text and one parameter per column, whatever the number of rows: an executemany binds and
    converts every value of every row in Python first, which cost more than PostgreSQL's insert itself.
    Pass the rows through `array_params`. JSONB columns take JSON text (orjson's, cheaper than the driver's
    json module) and are cast row by row. `on_conflict_update` builds the usual upsert suffix.
    """
    quote = _DIALECT.identifier_preparer.quote
    arrays, values = [], []
    for c in columns:
        sql_type = table.c[c].type.compile(dialect=_DIALECT)
        json = sql_type == "JSONB"
        arrays.append(f"CAST(:{c} AS {'TEXT' if json else sql_type}[])")
        values.append(f"u.{quote(c)}::jsonb" if json else f"u.{quote(c)}")
    names = ", ".join(quote(c) for c in columns)
    return text(
        f"INSERT INTO {quote(table.name)} ({names}) SELECT {', '.join(values)} "
        f"FROM unnest({', '.join(arrays)}) AS u({names}) {suffix}".rstrip()
    )


def on_conflict_update(
    table: Table, key: Sequence[str], columns: Sequence[str], *, keep: Sequence[str] = ()
) -> str:
    """`ON CONFLICT (key) DO UPDATE SET` every other column to the incoming row's, except those in `keep`
    (columns only a first event knows), which keep their stored value unless it is NULL."""
    quote = _DIALECT.identifier_preparer.quote
    sets = ", ".join(
        f"{quote(c)} = COALESCE({quote(table.name)}.{quote(c)}, excluded.{quote(c)})"
        if c in keep
        else f"{quote(c)} = excluded.{quote(c)}"
        for c in columns
        if c not in key
    )
    return f"ON CONFLICT ({', '.join(quote(c) for c in key)}) DO UPDATE SET {sets}"


def array_params(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {c: [row[c] for row in rows] for c in columns}


def columns_of(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns)
