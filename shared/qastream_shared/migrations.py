"""Runs a service's Alembic history inside its own schema, under an advisory lock so replicas can race."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from qastream_shared.db import create_engine, ensure_schema
from qastream_shared.settings import Settings


async def migrate(settings: Settings, schema: str, script_location: str) -> None:
    engine = create_engine(settings, schema, pool_size=1)
    try:
        await ensure_schema(engine, schema)
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": "migrate:" + schema})
            await conn.run_sync(_upgrade, script_location, schema)
    finally:
        await engine.dispose()


def _upgrade(sync_conn: Any, script_location: str, schema: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    cfg.attributes["connection"] = sync_conn
    cfg.attributes["schema"] = schema
    command.upgrade(cfg, "head")


def run_alembic_env() -> None:
    """The body of every service's migrations/env.py."""
    from alembic import context

    conn = context.config.attributes["connection"]
    schema = context.config.attributes["schema"]
    context.configure(connection=conn, version_table_schema=schema, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()
