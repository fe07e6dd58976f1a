"""Exports: reviews, ratings, disputes, coaching tasks and daily aggregates as CSV or Parquet, streamed.

Rows come from a server-side cursor in chunks, and each chunk is encoded and sent before the next is read:
memory stays bounded by one chunk however long the range. Parquet is written one row group per chunk
through a sink that hands its bytes on as soon as pyarrow writes them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import BigInteger, Float, Table, cast, column, func, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from qastream_reporting import metrics
from qastream_reporting.facts import ROLLUPS
from qastream_reporting.tables import coaching_tasks, disputes, is_count, reviews, with_deltas
from qastream_shared.auth import Principal, visible

CHUNK = 5000


@dataclass(frozen=True)
class Export:
    table: Table
    columns: Sequence[tuple[str, pa.DataType]]
    select: Callable[[Table], Any]  # the query's FROM and columns (a select of `columns`, in order)
    shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # per-row figures from sums


def _plain(table: Table, columns: Sequence[tuple[str, pa.DataType]]) -> Export:
    """An export of the table's own columns, as they are stored."""
    return Export(table, columns, lambda t: select(*(t.c[n] for n, _ in columns)))


_REVIEW_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("review_id", pa.string()),
    ("conversation_id", pa.string()),
    ("kind", pa.string()),
    ("scorecard_id", pa.string()),
    ("scorecard_version", pa.int32()),
    ("revision", pa.int32()),
    ("reviewer_id", pa.string()),
    ("agent_id", pa.string()),
    ("team", pa.string()),
    ("channel", pa.string()),
    ("score", pa.float64()),
    ("auto_failed", pa.bool_()),
    ("passed", pa.bool_()),
    ("inclusion_probability", pa.float64()),
    ("time_spent_s", pa.float64()),
    ("pcsat", pa.float64()),
    ("submitted_at", pa.timestamp("us", tz="UTC")),
    ("day", pa.date32()),
]


def _ratings_select(t: Table) -> Any:
    r = func.jsonb_array_elements(t.c.ratings).table_valued(column("value", JSONB)).alias("r")
    cause = func.jsonb_array_elements_text(r.c.value["root_causes"]).column_valued("cause")
    causes = select(func.string_agg(cause, ";"))
    return select(
        t.c.review_id,
        t.c.conversation_id,
        t.c.kind,
        t.c.scorecard_version,
        t.c.agent_id,
        t.c.team,
        t.c.day,
        r.c.value["category_id"].astext.label("category_id"),
        cast(r.c.value["value"].astext, Float).label("value"),
        cast(r.c.value["score"].astext, Float).label("score"),
        causes.scalar_subquery().label("root_causes"),
    ).select_from(t.join(r, literal_column("true")))


_SCORE_DIMS = [d for d in ROLLUPS["score_rollup"][0] if d != "view"]
_SCORE_SUMS = ROLLUPS["score_rollup"][1]


def _sum(t: Table, m: str) -> Any:
    # SUM of a bigint is numeric: counts back to bigint, sums to float.
    return cast(func.sum(t.c[m]), BigInteger if is_count(m) else Float).label(m)


EXPORTS: dict[str, Export] = {
    "reviews": _plain(reviews, _REVIEW_COLUMNS),
    "ratings": Export(
        reviews,
        [
            ("review_id", pa.string()),
            ("conversation_id", pa.string()),
            ("kind", pa.string()),
            ("scorecard_version", pa.int32()),
            ("agent_id", pa.string()),
            ("team", pa.string()),
            ("day", pa.date32()),
            ("category_id", pa.string()),
            ("value", pa.float64()),
            ("score", pa.float64()),
            ("root_causes", pa.string()),
        ],
        _ratings_select,
    ),
    "disputes": _plain(
        disputes,
        [
            ("dispute_id", pa.string()),
            ("review_id", pa.string()),
            ("conversation_id", pa.string()),
            ("category_id", pa.string()),
            ("agent_id", pa.string()),
            ("team", pa.string()),
            ("opened_by", pa.string()),
            ("opened_at", pa.timestamp("us", tz="UTC")),
            ("outcome", pa.string()),
            ("resolved_by", pa.string()),
            ("resolved_at", pa.timestamp("us", tz="UTC")),
            ("day", pa.date32()),
        ],
    ),
    "coaching_tasks": _plain(
        coaching_tasks,
        [
            ("task_id", pa.string()),
            ("rule_id", pa.string()),
            ("agent_id", pa.string()),
            ("team", pa.string()),
            ("category_id", pa.string()),
            ("status", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("updated_at", pa.timestamp("us", tz="UTC")),
            ("day", pa.date32()),
        ],
    ),
    # Daily quality per scope and scorecard version (view "version": every review of that version once).
    "aggregates": Export(
        with_deltas["score_rollup"],
        [
            *[
                (d, pa.date32() if d == "day" else pa.int32() if d == "scorecard_version" else pa.string())
                for d in _SCORE_DIMS
            ],
            ("reviews", pa.int64()),
            ("iqs", pa.float64()),
            ("pass_rate", pa.float64()),
            ("auto_fail_rate", pa.float64()),
        ],
        # Grouped: a key's compacted row and its deltas not yet compacted are one figure (deltas.py).
        lambda t: (
            select(*(t.c[d] for d in _SCORE_DIMS), *(_sum(t, m) for m in _SCORE_SUMS))
            .where(t.c.view == "version")
            .group_by(*(t.c[d] for d in _SCORE_DIMS))
        ),
        shape=lambda row: {
            **{d: row[d] for d in _SCORE_DIMS},
            **{
                k: v
                for k, v in metrics.quality(row).items()
                if k in ("reviews", "iqs", "pass_rate", "auto_fail_rate")
            },
        },
    ),
}


async def rows(
    engine: AsyncEngine, name: str, principal: Principal, since: date | None, until: date | None
) -> AsyncIterator[list[dict[str, Any]]]:
    """The export's rows for the caller's scope, chunk by chunk, from a server-side cursor."""
    spec = EXPORTS[name]
    t = spec.table
    stmt = spec.select(t).where(visible(t, principal))
    if since is not None:
        stmt = stmt.where(t.c.day >= since)
    if until is not None:
        stmt = stmt.where(t.c.day <= until)
    async with engine.connect() as conn:
        result = await conn.stream(stmt.execution_options(yield_per=CHUNK))
        async for part in result.mappings().partitions(CHUNK):
            chunk = [dict(r) for r in part]
            yield [spec.shape(r) for r in chunk] if spec.shape else chunk


async def csv_stream(name: str, chunks: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    names = [c for c, _ in EXPORTS[name].columns]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(names)
    yield buf.getvalue().encode()
    async for chunk in chunks:
        buf.seek(0)
        buf.truncate()
        writer.writerows([r[n] for n in names] for r in chunk)
        yield buf.getvalue().encode()


class _Sink(io.RawIOBase):
    """A write-only file whose bytes are taken away as soon as they are written."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.parts.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


async def parquet_stream(name: str, chunks: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    schema = pa.schema(EXPORTS[name].columns)
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    try:
        async for chunk in chunks:
            batch = pa.RecordBatch.from_pylist(chunk, schema=schema)
            writer.write_batch(batch)
            data = sink.take()
            if data:
                yield data
    finally:
        writer.close()
    yield sink.take()
