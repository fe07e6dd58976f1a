"""When each conversation's rows commit in the services' schemas: the pipeline benches' observer.

A row trigger (`Probe`) on a service's table sends `pg_notify(channel, '<stage> <conversation_id>')`;
PostgreSQL delivers a notification when its transaction commits, so the time it is heard is the time the row
became visible, with no polling interval in the figure and no query whose size grows with the conversations
still awaited. The listener runs in a process of its own (`Observer`): its CPU is measured apart from the load
generator's, and the load generator's event loop cannot delay its timestamps. Both processes read
`time.perf_counter()` (CLOCK_MONOTONIC, one clock for the whole machine), so the times compare.

The triggers are the bench's instruments, installed in the run's own schemas and dropped with them: each costs
the service's transaction a PL/pgSQL call and a notification per row.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import asyncpg
import psutil


@dataclass(frozen=True)
class Probe:
    """`stage` is heard when a row of `schema.table` matching `when` (SQL on NEW) commits."""

    stage: str
    schema: str
    table: str
    when: str = "true"

    @property
    def name(self) -> str:
        return f"bench_seen_{self.stage}"


async def install(conn: asyncpg.Connection, channel: str, probes: Iterable[Probe]) -> None:
    for pr in probes:
        await conn.execute(
            f"""
            CREATE OR REPLACE FUNCTION "{pr.schema}".{pr.name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{channel}', '{pr.stage} ' || NEW.conversation_id);
                RETURN NULL;
            END $$;
            CREATE TRIGGER {pr.name} AFTER INSERT ON "{pr.schema}".{pr.table}
                FOR EACH ROW WHEN ({pr.when}) EXECUTE FUNCTION "{pr.schema}".{pr.name}();
            """
        )


async def uninstall(conn: asyncpg.Connection, probes: Iterable[Probe]) -> None:
    for pr in probes:
        await conn.execute(f'DROP TRIGGER IF EXISTS {pr.name} ON "{pr.schema}".{pr.table}')


def _listen(dsn: str, channel: str, pipe: Connection) -> None:
    """The observer process: forwards (payload, time heard) in one message per event-loop turn."""

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        loop = asyncio.get_running_loop()
        heard: list[tuple[str, float]] = []

        def forward() -> None:
            pipe.send(heard.copy())
            heard.clear()

        def notified(_c: Any, _pid: int, _channel: str, payload: str) -> None:
            if not heard:
                loop.call_soon(forward)
            heard.append((payload, time.perf_counter()))

        await conn.add_listener(channel, notified)
        stop = asyncio.Event()
        loop.add_reader(pipe.fileno(), stop.set)  # the parent's "stop", or its end closing
        pipe.send("listening")
        await stop.wait()
        await conn.close()

    asyncio.run(run())


class Observer:
    """The parent's side: `seen[stage][conversation_id]` is the time that stage's row was heard committing."""

    def __init__(self, dsn: str, channel: str) -> None:
        self.dsn = dsn
        self.channel = channel
        self.seen: dict[str, dict[str, float]] = {}
        self.heard = 0
        self.changed = asyncio.Event()
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._proc = context.Process(target=_listen, args=(dsn, channel, child), daemon=True)

    async def start(self) -> None:
        self._proc.start()
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, self._pipe.recv)
        if ready != "listening":
            raise RuntimeError(f"observer process said {ready!r}")
        loop.add_reader(self._pipe.fileno(), self._read)

    def _read(self) -> None:
        while self._pipe.poll():
            for payload, at in self._pipe.recv():
                stage, _, cid = payload.partition(" ")
                self.seen.setdefault(stage, {}).setdefault(cid, at)
                self.heard += 1
        self.changed.set()

    async def until_seen(self, stages: Iterable[str], ids: Iterable[str], within: float) -> set[str]:
        """Waits until every id was seen at every stage, or `within` seconds; returns the ids still missing."""
        deadline = time.perf_counter() + within
        stages = tuple(stages)
        missing = {cid for cid in ids for st in stages if cid not in self.seen.get(st, {})}
        while missing and (left := deadline - time.perf_counter()) > 0:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                break
            missing = {cid for cid in missing for st in stages if cid not in self.seen.get(st, {})}
        return missing

    def cpu_seconds(self) -> float:
        assert self._proc.pid is not None
        t = psutil.Process(self._proc.pid).cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        asyncio.get_running_loop().remove_reader(self._pipe.fileno())
        if self._proc.is_alive():
            self._pipe.send("stop")
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
        self._pipe.close()
