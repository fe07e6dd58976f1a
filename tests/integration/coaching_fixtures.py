"""Fixtures of the coaching tests: review and dispute events, a runtime with its rules stored, the tasks as
stored, one batch through the handler, and a real HTTP webhook receiver on loopback."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import select

from qastream_coaching import rule_store
from qastream_coaching.app import SPEC
from qastream_coaching.handlers import make_handler
from qastream_coaching.rules import Rule
from qastream_coaching.tables import evidence, tasks
from qastream_shared.events import (
    CoachingTaskEvent,
    DisputeOutcome,
    DisputeResolved,
    Envelope,
    Rating,
    ReviewKind,
    ReviewRevised,
    ReviewSubmitted,
    conversation_key,
    decode,
)
from qastream_shared.migrations import migrate
from qastream_shared.outbox import unpack_headers
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAILED = {"empathy": 0.25, "greeting": 1.0}
PASSED = {"empathy": 1.0, "greeting": 1.0}
EMPATHY_THRICE = Rule(
    rule_id="empathy-thrice",
    trigger="category_failures",
    category_id="empathy",
    k=3,
    window_days=7,
    title="Empathy failed three times",
)


async def with_rules(settings: Settings, rules: list[Rule], tenant: str = "acme") -> ServiceRuntime:
    """A coaching runtime on its migrated schema with `rules` stored; its consumer is not started."""
    rt = ServiceRuntime(SPEC, settings)
    await migrate(settings, rt.schema, SPEC.migrations)
    async with rt.unit_of_work() as uow:
        for rule in rules:
            await rule_store.save_rule(uow.session, tenant, rule)
    return rt


async def handle(rt: ServiceRuntime, *events: Envelope) -> None:
    """One batch through the service's handler, as its consumer would run it."""
    handler = rt.components.setdefault("handler", make_handler(rt))
    async with rt.unit_of_work() as uow:
        await handler(uow, list(events))


async def task_state(rt: ServiceRuntime) -> dict[str, tuple[Any, ...]]:
    """task id → (status, agent, category, evidence review ids, the rule that opened it) of every task."""
    async with rt.sessions() as s:
        rows = (await s.execute(select(tasks))).mappings().all()
        ev = (await s.execute(select(evidence.c.task_id, evidence.c.review_id))).all()
    by_task: dict[str, list[str]] = {}
    for t, r in ev:
        by_task.setdefault(t, []).append(r)
    return {
        r["task_id"]: (
            r["status"],
            r["agent_id"],
            r["category_id"],
            sorted(by_task.get(r["task_id"], [])),
            r["rule_id"],
        )
        for r in rows
    }


async def task_events(rt: ServiceRuntime) -> list[CoachingTaskEvent]:
    """The task events the runtime has published (its outbox), in order."""
    outbox = rt.tables["outbox"]
    async with rt.sessions() as s:
        query = select(outbox.c.key, outbox.c.value, outbox.c.headers).order_by(outbox.c.id)
        rows = (await s.execute(query)).all()
    found = [decode(key, value, unpack_headers(headers)).data for key, value, headers in rows]
    return [e for e in found if isinstance(e, CoachingTaskEvent)]


def live(state: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    """The open and acknowledged tasks of a `task_state`."""
    return {k: v for k, v in state.items() if v[0] in ("open", "acknowledged")}


def ratings(cats: dict[str, float]) -> list[Rating]:
    return [Rating(category_id=c, value=round(s * 4), score=s) for c, s in cats.items()]


def submitted(
    tenant: str,
    rid: str,
    *,
    agent: str = "ann",
    team: str = "red",
    score: float = 0.5,
    cats: dict[str, float] | None = None,
    day: float = 0,
    kind: ReviewKind = ReviewKind.auto,
    auto_failed: bool = False,
    at: datetime | None = None,
) -> Envelope:
    data = ReviewSubmitted(
        review_id=rid,
        conversation_id=f"conv-{rid}",
        kind=kind,
        scorecard_id="customer-service",
        scorecard_version=1,
        agent_id=agent,
        team=team,
        ratings=ratings(cats or {"empathy": score, "greeting": 1.0}),
        score=score,
        auto_failed=auto_failed,
        passed=score >= 0.8 and not auto_failed,
        submitted_at=at or T0 + timedelta(days=day),
    )
    return Envelope(
        data=data, source="scoring", tenant=tenant, key=conversation_key(tenant, data.conversation_id)
    )


def revised(
    tenant: str,
    rid: str,
    revision: int,
    *,
    agent: str = "ann",
    score: float,
    cats: dict[str, float] | None = None,
) -> Envelope:
    data = ReviewRevised(
        review_id=rid,
        revision=revision,
        conversation_id=f"conv-{rid}",
        kind=ReviewKind.manual,
        agent_id=agent,
        team="red",
        ratings=ratings(cats or {"empathy": score, "greeting": 1.0}),
        score=score,
        passed=score >= 0.8,
        reason="dispute accepted",
        revised_at=T0 + timedelta(days=30),
    )
    return Envelope(
        data=data, source="scoring", tenant=tenant, key=conversation_key(tenant, data.conversation_id)
    )


def rejected(tenant: str, did: str, rid: str, category: str, day: float, *, agent: str = "ann") -> Envelope:
    data = DisputeResolved(
        dispute_id=did,
        review_id=rid,
        conversation_id=f"conv-{rid}",
        category_id=category,
        agent_id=agent,
        team="red",
        outcome=DisputeOutcome.rejected,
        resolved_by="lee",
        resolved_at=T0 + timedelta(days=day),
    )
    return Envelope(
        data=data, source="scoring", tenant=tenant, key=conversation_key(tenant, data.conversation_id)
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1. Paths: /ok answers 204; /flaky fails its first `fail_first` calls
    with 500; /hang holds every request until `release` is set."""

    fail_first: int = 3
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    calls: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                path = self.path
                with outer.lock:
                    n = outer.calls[path] = outer.calls.get(path, 0) + 1
                    outer.received.append(
                        Received(
                            path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
                        )
                    )
                if path.startswith("/hang"):
                    outer.release.wait(120)
                status = 500 if path.startswith("/flaky") and n <= outer.fail_first else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
