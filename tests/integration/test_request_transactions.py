"""request_work's rule, held against every endpoint of every service: a read opens no transaction (no BEGIN
on the wire), a write runs in one.

Each service runs in this process over ASGI against the real database. What a request sends is recorded
per request through a context variable (so the service's own loops are not counted): BEGIN, COMMIT and
ROLLBACK by an asyncpg query logger on every pooled connection, the statements by a SQLAlchemy event.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from qastream_shared.events import Role
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.testing import eventually, isolated_settings, publish_tenant_keys
from qastream_shared.topics import ensure_topics
from tests.integration.conftest_ingest import create_tenants
from tests.integration.live_service import SERVICES, ServiceUnderTest, scope_of

pytestmark = pytest.mark.integration

# Safe-method endpoints that run in a transaction on purpose, each with why.
TRANSACTIONAL_READS = {
    # Their rows stream from a server-side cursor, which PostgreSQL opens only inside a transaction.
    ("reporting", "/v1/metrics/shadow"),
    ("reporting", "/v1/exports/{dataset}.{fmt}"),
    # A write in a safe method: with nothing queued it claims from the unassigned pool.
    ("scoring", "/v1/assignments/next"),
}
# Writes with a body, each sent back what its GET answered. (A draft save is one statement that guards its
# own preconditions, so it runs without a transaction: see save_draft.)
ROUND_TRIPS = {
    "ingest": ["/v1/tenant/redaction-policy"],
    "scoring": ["/v1/reviewers", "/v1/scoring-settings"],
}
# Endpoints that never reach the database (the key is cached by then).
NO_DATABASE = {"/v1/session", "/v1/pcsat/model"}
# An event stream never ends; its reads go through request_work like every other read (stream_api.py).
NOT_CALLED = {("reporting", "/v1/stream")}

# Path parameters the routes constrain (pattern, enum, integer); any other takes "x".
PATH_VALUES = {"version": "1", "key_id": "ab12", "dataset": "reviews", "fmt": "csv", "rule_id": "x-rule"}
# Query parameters an endpoint requires before it reads anything.
QUERY = {"/v1/metrics/shadow": {"scorecard_id": "x", "scorecard_version": "1"}}

statements: ContextVar[list[str] | None] = ContextVar("statements", default=None)


def _log(record: Any) -> None:
    seen = statements.get()
    if seen is not None:
        seen.append(record.query)


def _watch(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    # BEGIN, COMMIT and ROLLBACK as sent on the wire (asyncpg logs its simple queries, not the prepared
    # statements SQLAlchemy runs: those are recorded by `_statement`).
    dbapi_connection.driver_connection.add_query_logger(_log)


def _statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    seen = statements.get()  # SQLAlchemy carries the caller's context into its greenlet
    if seen is not None:
        seen.append(statement)


@dataclass
class Service:
    name: str
    app: FastAPI
    http: httpx.AsyncClient
    headers: list[dict[str, str]]  # one key per role, a user-naming admin first

    async def call(self, method: str, path: str, **kw: Any) -> tuple[httpx.Response, list[str]]:
        """The first answer not refused for the role, and the statements the request sent."""
        for headers in self.headers:
            seen: list[str] = []
            token = statements.set(seen)
            try:
                r = await self.http.request(method, path, headers=headers, **kw)
            finally:
                statements.reset(token)
            # asyncpg hands each record to the logger with call_soon: a turn of the loop delivers those
            # scheduled during the request, in order, before this task resumes.
            await asyncio.sleep(0)
            if r.status_code != 403:
                break
        return r, seen

    def operations(self) -> list[tuple[str, str, bool]]:
        """(method, path, takes a body) of every operation the service publishes, and its readiness probe."""
        paths = self.app.openapi()["paths"]
        found = [(m.upper(), p, "requestBody" in op) for p, ops in paths.items() for m, op in ops.items()]
        return [*found, ("GET", "/readyz", False)]


def begins(seen: list[str]) -> int:
    return sum(1 for q in seen if q.lstrip().upper().startswith("BEGIN"))


def concrete(path: str) -> str:
    out = path
    for part in path.split("{")[1:]:
        name = part.split("}")[0]
        out = out.replace("{" + name + "}", PATH_VALUES.get(name, "x"))
    return out


@contextlib.asynccontextmanager
async def running(spec: ServiceUnderTest, database_url: str, kafka_bootstrap: str) -> AsyncIterator[Service]:
    settings = isolated_settings(database_url, kafka_bootstrap)
    if spec.name == "ingest":
        tenant = (await create_tenants(settings, "tx"))["tx"]
        keys = [tenant.keys[role] for role in Role]
    else:
        await ensure_topics(settings)
        people = [(Role.admin, {"agent_id": "admin-1"}), *[(role, scope_of(role)) for role in Role]]
        keys = [i.key for i in await publish_tenant_keys(settings, "tx", people)]
    app: FastAPI = importlib.import_module(f"{spec.module}.app").build(settings, consume=False)
    async with app.router.lifespan_context(app):
        runtime: ServiceRuntime = app.state.runtime
        event.listen(runtime.engine.sync_engine, "checkout", _watch)
        event.listen(runtime.engine.sync_engine, "before_cursor_execute", _statement)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc", timeout=60) as http:
            headers = [{"Authorization": f"Bearer {k}"} for k in keys]

            async def known() -> bool:
                return (await http.get(spec.authenticated, headers=headers[0])).status_code != 401

            await eventually(known, within=120)
            yield Service(spec.name, app, http, headers)


@pytest.fixture(scope="module", params=SERVICES, ids=lambda s: s.name)
async def service(
    request: pytest.FixtureRequest, database_url: str, kafka_bootstrap: str
) -> AsyncIterator[Service]:
    async with running(request.param, database_url, kafka_bootstrap) as svc:
        yield svc


async def test_reads_open_no_transaction(service: Service) -> None:
    checked, wrong = [], []
    for method, path, _ in service.operations():
        if method != "GET" or (service.name, path) in NOT_CALLED:
            continue
        r, seen = await service.call("GET", concrete(path), params=QUERY.get(path))
        where = f"GET {path} → {r.status_code} {r.text[:200]}"
        expected = 1 if (service.name, path) in TRANSACTIONAL_READS else 0
        if r.status_code not in (200, 204, 404):
            wrong.append(where)
        elif not seen and path not in NO_DATABASE:
            wrong.append(f"{where}: sent no statement, so it proves nothing")
        elif begins(seen) != expected:
            wrong.append(f"{where}: {begins(seen)} BEGIN, expected {expected}: {seen}")
        checked.append(path)
    assert checked
    assert not wrong, "\n".join(wrong)


async def test_writes_run_in_a_transaction(service: Service) -> None:
    """Every write that takes no body, on ids that do not exist: each reads inside its transaction before
    it answers 404 or 409; and the writes whose body a GET gives, committed in one transaction."""
    checked, wrong = [], []
    for method, path, body in service.operations():
        if method == "GET" or body or path.startswith("/v1/session"):
            continue
        r, seen = await service.call(method, concrete(path))
        where = f"{method} {path} → {r.status_code} {r.text[:200]}"
        if r.status_code >= 500 or r.status_code in (401, 403, 422):
            wrong.append(where)
        elif begins(seen) != 1:
            wrong.append(f"{where}: {begins(seen)} BEGIN, expected 1: {seen}")
        checked.append(path)
    for path in ROUND_TRIPS.get(service.name, []):
        current, _ = await service.call("GET", path)
        r, seen = await service.call("PUT", path, json=current.json())
        if r.status_code != 200 or begins(seen) != 1 or not any(q.startswith("COMMIT") for q in seen):
            wrong.append(f"PUT {path} → {r.status_code} {r.text[:200]}: {seen}")
        checked.append(path)
    assert not wrong, "\n".join(wrong)
    if service.name != "reporting":  # reporting only reads
        assert checked
