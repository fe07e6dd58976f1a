"""Cursor paging for every list endpoint: a stable order and an opaque cursor (`?cursor=&limit=`).

The cursor is the sort key of the last row served, so a page never repeats or skips rows when others are
inserted meanwhile (unlike OFFSET). It is opaque to clients: base64 of JSON, validated on the way back in.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Annotated, Any

import orjson
from fastapi import HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, tuple_

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


def decode_cursor(cursor: str, width: int) -> list[Any]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != width:
            raise ValueError("wrong shape")
        return [_typed(v) for v in raw]
    except (ValueError, TypeError, KeyError) as exc:
        raise HTTPException(422, f"cursor: not a cursor this endpoint issued ({exc})") from None


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
        key, after = tuple_(*order), tuple_(*decode_cursor(cursor, len(order)))
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
