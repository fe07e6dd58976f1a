"""Cursor paging for every list endpoint: a stable order and an opaque cursor (`?cursor=&limit=`).

The cursor is the sort key of the last row served, so a page never repeats or skips rows when others are
inserted meanwhile (unlike OFFSET). It is opaque to clients: base64 of JSON, validated on the way back in.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, tuple_

from qastream_shared.http import unprocessable

CursorParam = Annotated[str | None, Query(max_length=1000, description="Opaque cursor from `next_cursor`")]
LimitParam = Annotated[int, Query(ge=1, le=500, description="Rows per page")]


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = None


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return {"t": v.isoformat()}
    if isinstance(v, date):
        return {"d": v.isoformat()}
    return v


def _typed(v: Any) -> Any:
    if isinstance(v, dict):
        return datetime.fromisoformat(v["t"]) if "t" in v else date.fromisoformat(v["d"])
    return v


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [_plain(v) for v in values]
    return base64.urlsafe_b64encode(orjson.dumps(plain)).decode().rstrip("=")


def decode_cursor(cursor: str, order: Sequence[ColumnElement[Any]]) -> list[Any]:
    """The sort key a cursor holds, each value of its column's type: a forged or stale cursor is a 422
    naming `cursor`, never a value PostgreSQL refuses (a 500)."""
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(order):
            raise ValueError("wrong shape")
        return [_checked(column, _typed(v)) for column, v in zip(order, raw, strict=True)]
    except (ValueError, TypeError, KeyError) as exc:
        raise unprocessable("cursor", f"not a cursor this endpoint issued ({exc})") from None


_INT64 = 2**63


def _checked(column: ColumnElement[Any], value: Any) -> Any:
    if value is None:
        return value
    try:
        expected: type | None = column.type.python_type
    except NotImplementedError:
        expected = None
    # bool is an int and a datetime is a date to isinstance, never to a cursor.
    if expected is int:
        ok = type(value) is int and -_INT64 <= value < _INT64
    elif expected is float or expected is Decimal:
        ok = type(value) in (int, float)
    elif expected is str:
        ok = type(value) is str and "\x00" not in value
    elif expected is datetime:
        # A naive value for a timestamptz is read as UTC; an aware one for a plain timestamp fails.
        ok = type(value) is datetime and (value.tzinfo is None or getattr(column.type, "timezone", True))
    elif expected is date:
        ok = type(value) is date
    else:
        ok = type(value) in (int, float, str)
    if not ok:
        raise ValueError(
            f"a {type(value).__name__} where the order expects {getattr(expected, '__name__', 'a scalar')}"
        )
    return value


def paged(
    query: Select[Any],
    order: Sequence[ColumnElement[Any]],
    cursor: str | None,
    limit: int,
    *,
    newest_first: bool = False,
) -> Select[Any]:
    """`query` in `order` (which must end in a unique column), after `cursor`, with one row extra to tell
    whether another page follows. `newest_first` pages the same key downwards."""
    if cursor:
        key, after = tuple_(*order), tuple_(*decode_cursor(cursor, order))
        query = query.where(key < after if newest_first else key > after)
    return query.order_by(*(c.desc() if newest_first else c for c in order)).limit(limit + 1)


def page_of(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str], limit: int
) -> tuple[list[Any], str | None]:
    """The rows of one page and the cursor of the next (None on the last page)."""
    if len(rows) <= limit:
        return list(rows), None
    rows = rows[:limit]
    return list(rows), encode_cursor([rows[-1][k] for k in keys])
