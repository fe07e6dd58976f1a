"""The delivery loop (a ServiceSpec task beside the consumer): drains due deliveries into signed POSTs.

Each request runs as its own task under a global limit and a per-webhook limit, with a per-request timeout,
so a receiver that hangs holds only its own webhook's slots. Failures are retried with exponential backoff
and jitter; after `max_attempts` the delivery is dead (visible in the log, replayable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import Counter as Metric

from qastream_coaching.webhooks import signing, store
from qastream_coaching.webhooks.settings import WebhookSettings, webhook_settings
from qastream_coaching.webhooks.ssrf import RefusedUrl
from qastream_coaching.webhooks.transport import webhook_client
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.transient import is_transient

log = logging.getLogger(__name__)
ATTEMPTS = Metric("qa_webhook_attempts_total", "Webhook delivery attempts", ["outcome"])


def backoff_s(attempt: int, cfg: WebhookSettings, rng: random.Random) -> float:
    """Exponential in the attempt number, capped, with "equal jitter" (half fixed, half random)."""
    step: float = min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** (attempt - 1))
    return step / 2 + rng.uniform(0, step / 2)


class Deliverer:
    def __init__(self, runtime: ServiceRuntime, cfg: WebhookSettings) -> None:
        self.runtime = runtime
        self.cfg = cfg
        self.in_flight: Counter[str] = Counter()
        self.running: set[asyncio.Task[None]] = set()
        self.rng = random.Random()
        self.client = webhook_client(cfg.allow_networks, cfg.timeout_s)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self._claim_and_start()
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    log.warning("webhook delivery loop: database unavailable (%r); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.cfg.poll_s)
        finally:
            for t in list(self.running):
                t.cancel()
            await asyncio.gather(*self.running, return_exceptions=True)
            await self.client.aclose()

    async def _claim_and_start(self) -> None:
        free = self.cfg.concurrency - len(self.running)
        if free <= 0:
            return
        per = self.cfg.per_webhook_concurrency
        room = {w: per - n for w, n in self.in_flight.items()}
        async with self.runtime.sessions() as session, session.begin():
            claimed = await store.claim(session, free, room, per, lease_s=self.cfg.timeout_s + 30)
        for d in claimed:
            self.in_flight[d["webhook_id"]] += 1
            task = asyncio.create_task(self._deliver(d))
            self.running.add(task)
            task.add_done_callback(self._done(d["webhook_id"]))

    def _done(self, webhook_id: str) -> Any:
        def done(task: asyncio.Task[None]) -> None:
            self.running.discard(task)
            self.in_flight[webhook_id] -= 1
            if self.in_flight[webhook_id] <= 0:
                del self.in_flight[webhook_id]
            if not task.cancelled() and task.exception() is not None:
                log.error("webhook delivery failed to record: %r", task.exception())

        return done

    async def _deliver(self, d: dict[str, Any]) -> None:
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        if d["url"] is None or not d["active"]:
            error = "webhook deleted or disabled"
        else:
            try:
                body: bytes = d["body"]
                headers = signing.headers(d["secret"], d["event_id"], int(time.time()), body)
                response = await self.client.post(d["url"], content=body, headers=headers)
                status_code = response.status_code
                if not 200 <= status_code < 300:
                    error = f"HTTP {status_code}"
            except RefusedUrl as exc:
                error = f"refused: {exc}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        duration_ms = (time.perf_counter() - started) * 1000
        attempt = d["attempts"] + 1
        final = error is None or attempt >= self.cfg.max_attempts or d["url"] is None or not d["active"]
        outcome = "delivered" if error is None else ("dead" if final else "pending")
        retry_at = (
            datetime.now(UTC) + timedelta(seconds=backoff_s(attempt, self.cfg, self.rng))
            if outcome == "pending"
            else None
        )
        ATTEMPTS.labels(outcome).inc()
        async with self.runtime.sessions() as session, session.begin():
            await store.record_attempt(
                session,
                d,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
                outcome=outcome,
                retry_at=retry_at,
            )


async def deliver_webhooks(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    await Deliverer(runtime, webhook_settings(runtime)).run(stop)
