"""The projection's one way to write rows: array upserts (`INSERT … SELECT FROM unnest(arrays) ON CONFLICT`).

Rows go through `qastream_shared.db.array_params`: one parameter per column, whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.dialects import postgresql

_DIALECT = postgresql.dialect()


def _sql_type(column: Any) -> str:
    return str(column.type.compile(dialect=_DIALECT))


def upsert(table: Any, columns: Sequence[str], conflict: Sequence[str], *, update: str = "set") -> TextClause:
    """`INSERT … SELECT FROM unnest(arrays) ON CONFLICT (…)`: replace the row ("set"), add to it ("add"),
    or keep it ("keep"). JSONB travels as text arrays and is cast per row."""
    arrays = ", ".join(
        f"CAST(:{c} AS {'TEXT' if _sql_type(table.c[c]) == 'JSONB' else _sql_type(table.c[c])}[])"
        for c in columns
    )
    select = ", ".join(f"u.{c}::jsonb" if _sql_type(table.c[c]) == "JSONB" else f"u.{c}" for c in columns)
    rest = [c for c in columns if c not in conflict]
    if update == "keep" or not rest:
        action = "DO NOTHING"
    elif update == "add":
        action = "DO UPDATE SET " + ", ".join(f"{c} = {table.name}.{c} + excluded.{c}" for c in rest)
    else:
        action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest)
    returning = " RETURNING ctid::text AS ctid, n" if update == "add" else ""
    return text(
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {select} FROM unnest({arrays}) "
        f"AS u({', '.join(columns)}) ON CONFLICT ({', '.join(conflict)}) {action}{returning}"
    )


def columns_of(table: Any) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns)
