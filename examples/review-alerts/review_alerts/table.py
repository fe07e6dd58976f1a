"""The local table: one Parquet file per handled batch under one directory, read back as one table.

Delivery is at least once (a batch that fails before its offsets commit comes again), so `read()` keeps
the first row of each event id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("tenant", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("conversation_id", pa.string()),
        ("review_id", pa.string()),
        ("agent_id", pa.string()),
        ("score", pa.float64()),
        ("auto_failed", pa.bool_()),
        ("payload", pa.string()),  # the event's JSON, for columns this table does not have
    ]
)


@dataclass(frozen=True)
class Row:
    event_id: str
    type: str
    tenant: str
    time: datetime
    topic: str
    partition: int
    offset: int
    conversation_id: str | None
    review_id: str | None
    agent_id: str | None
    score: float | None
    auto_failed: bool | None
    payload: str


class ParquetTable:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def append(self, rows: Sequence[Row]) -> Path | None:
        if not rows:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        first = rows[0]
        # Named by the batch's first record, so a redelivered batch starting there replaces its file.
        path = (
            self.directory / f"{first.topic}-{first.partition}-{first.offset:012d}-{first.event_id}.parquet"
        )
        columns = {name: [getattr(r, name) for r in rows] for name in SCHEMA.names}
        tmp = path.with_suffix(".tmp")
        pq.write_table(pa.table(columns, schema=SCHEMA), tmp)
        tmp.replace(path)  # readers never see half a file
        return path

    def read(self) -> pa.Table:
        files = sorted(self.directory.glob("*.parquet"))
        if not files:
            return SCHEMA.empty_table()
        table = pa.concat_tables([pq.read_table(f, schema=SCHEMA) for f in files])
        seen: set[str] = set()
        keep = []
        for i, event_id in enumerate(table["event_id"].to_pylist()):
            if event_id not in seen:
                seen.add(event_id)
                keep.append(i)
        return table.take(keep)
