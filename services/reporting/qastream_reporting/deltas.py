"""Rollup writes: a batch appends its difference to each rollup's delta table; compaction folds the deltas
into the rollups.

Why: upserting a batch's rollup rows looked each one up by its eleven-column key and rewrote it, about a
second per batch; appending the same rows costs a twentieth of that. Compaction then upserts each key once
for many batches (one day's keys recur in every batch). Reads sum the rollup and its deltas (store.py), so a
figure never waits for compaction.

Compaction moves the rows it sees (`DELETE … RETURNING`) into the rollup in one statement per table, in key
order, so two replicas compacting at once neither double-count (the second finds the rows gone) nor
deadlock; rows a concurrent batch has not committed yet stay for the next compaction. Rollup rows whose
count falls to 0 are deleted, so a rebuild holds exactly the rows live does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_reporting import facts
from qastream_reporting.tables import deltas, is_count, rollups
from qastream_shared.db import columns_of

# Compact once this many delta rows were appended by this process, or this long after its last compaction:
# rows bound what reads add up beside the rollups, seconds bound how long a batch's rows wait.
COMPACT_ROWS = 100_000
COMPACT_SECONDS = 30.0
# A sum this close to 0 is a row that cancelled out (a review that moved away and back, say).
_ZERO = 1e-12

_COLUMNS = {name: columns_of(t) for name, t in deltas.items()}


def _compact_statement(name: str) -> TextClause:
    rollup, delta = rollups[name], deltas[name]
    dims = ["tenant_id", *facts.ROLLUPS[name][0]]
    measures = facts.ROLLUPS[name][1]
    key = [c.name for c in rollup.primary_key.columns]
    sums = [f"CAST(sum({m}) AS {'BIGINT' if is_count(m) else 'FLOAT'})" for m in measures]
    adds = ", ".join(f"{m} = {rollup.name}.{m} + excluded.{m}" for m in measures)
    return text(
        f"WITH moved AS (DELETE FROM {delta.name} RETURNING *) "
        f"INSERT INTO {rollup.name} ({', '.join([*dims, *measures])}) "
        f"SELECT {', '.join([*dims, *sums])} FROM moved GROUP BY {', '.join(dims)} ORDER BY {', '.join(key)} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {adds} RETURNING ctid::text AS ctid, n"
    )


_COMPACT = {name: _compact_statement(name) for name in facts.ROLLUPS}


async def _driver(session: AsyncSession) -> Any:
    """The session's asyncpg connection, in the session's transaction (COPY has no SQLAlchemy API)."""
    raw = await (await session.connection()).get_raw_connection()
    return raw.driver_connection


async def append(session: AsyncSession, tenant: str, diff: facts.Contributions) -> int:
    """Appends one tenant's difference, without the rows that cancelled out; returns the number of rows
    appended.

    By COPY (binary), not an INSERT of unnested arrays: the delta tables have no key to conflict on, and the
    driver encoded every array element after an ABC check (about a tenth of the projection's CPU), where
    COPY encodes each row's values by their column's codec."""
    driver = await _driver(session)
    appended = 0
    for name, rows in diff.items():
        # Counts are sums of ints and bools, so ints already: the values go to COPY as they are.
        records = [
            (tenant, *key, *values)
            for key, values in rows.items()
            if max(values) > _ZERO or min(values) < -_ZERO
        ]
        if records:
            await driver.copy_records_to_table(deltas[name].name, records=records, columns=_COLUMNS[name])
            appended += len(records)
    return appended


async def compact(session: AsyncSession) -> None:
    """Folds every delta row committed so far into its rollup."""
    for name, statement in _COMPACT.items():
        result = await session.execute(statement)
        empty = [r.ctid for r in result if r.n == 0]
        if empty:
            await session.execute(
                # Bound as text: asyncpg encodes a tid[] parameter only from tuples, and these are strings.
                text(
                    f"DELETE FROM {rollups[name].name} WHERE ctid = ANY(CAST(CAST(:ctids AS TEXT[]) AS TID[]))"
                ),
                {"ctids": empty},
            )


@dataclass
class Compaction:
    """When this process compacts: after COMPACT_ROWS appended rows or COMPACT_SECONDS."""

    rows: int = 0
    last: float = field(default_factory=time.monotonic)

    async def after_batch(self, session: AsyncSession, appended: int) -> None:
        self.rows += appended
        if self.rows and (self.rows >= COMPACT_ROWS or time.monotonic() - self.last >= COMPACT_SECONDS):
            await compact(session)
            self.rows, self.last = 0, time.monotonic()
