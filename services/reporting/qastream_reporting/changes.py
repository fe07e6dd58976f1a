"""Which tenants' figures just changed: one LISTEN connection per process, fanned out to subscribers.

The projection notifies `qa_reporting:<schema>` with the tenant in the transaction that changes its
figures, so PostgreSQL delivers it on commit to every replica, whichever one projected the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from qastream_reporting.projection import NOTIFY_CHANNEL
from qastream_shared.settings import Settings

log = logging.getLogger(__name__)


class Changes:
    def __init__(self, settings: Settings, schema: str) -> None:
        self.settings = settings
        self.channel = NOTIFY_CHANNEL + schema
        self._subscribers: dict[str, set[asyncio.Queue[None]]] = {}
        self._conn: Any = None
        self._lock = asyncio.Lock()

    def _notified(self, _conn: Any, _pid: int, _channel: str, tenant: str) -> None:
        for queue in self._subscribers.get(tenant, ()):
            if queue.empty():  # one pending wake-up is enough: the subscriber re-reads the figures
                queue.put_nowait(None)

    async def _listening(self) -> None:
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self.settings.asyncpg_dsn)
                await self._conn.add_listener(self.channel, self._notified)

    @contextlib.asynccontextmanager
    async def subscribe(self, tenant: str) -> AsyncIterator[asyncio.Queue[None]]:
        await self._listening()
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        self._subscribers.setdefault(tenant, set()).add(queue)
        try:
            yield queue
        finally:
            self._subscribers[tenant].discard(queue)

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
