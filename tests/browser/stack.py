"""The whole pipeline as real processes for the console's browser tests and bench.console: each service on
its own port and schema, one topic prefix, one session secret, CORS for the console (served by reporting).

Not a conftest: tests/browser/conftest.py and bench/console.py import it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from qastream_shared.events import Role
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import settings_env
from qastream_shared.topics import ensure_topics
from tests.integration.live_service import ready

REPO = Path(__file__).resolve().parents[2]
PIPELINE = ("ingest", "sampler", "scoring", "coaching", "reporting")


@dataclass(frozen=True)
class Person:
    """Someone who signs in: a key of one role, naming the person (agent_id) or team where the role needs it."""

    name: str
    role: Role
    agent_id: str | None = None
    team: str | None = None


# The cast of the browser tests: one of each persona, three reviewers for calibration, two agents.
PEOPLE = (
    Person("admin", Role.admin, "admin-1"),
    Person("lead", Role.qa_lead, "lead-1"),
    Person("reviewer", Role.reviewer, "rev-1"),
    Person("reviewer2", Role.reviewer, "rev-2"),
    Person("reviewer3", Role.reviewer, "rev-3"),
    Person("team_lead", Role.team_lead, "tl-1", "team-a"),
    Person("agent", Role.agent, "agent-1", "team-a"),
    Person("agent2", Role.agent, "agent-2", "team-b"),
)


@dataclass
class Service:
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log: io.BytesIO = field(default_factory=io.BytesIO)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.getvalue().decode(errors="replace")[-4000:]


@dataclass
class LiveStack:
    settings: Settings
    tenant: str
    services: dict[str, Service]
    keys: dict[str, str] = field(default_factory=dict)
    secret: str = ""

    def url(self, service: str) -> str:
        return self.services[service].url

    @property
    def console(self) -> str:
        return self.url("reporting")

    def auth(self, person: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[person]}"}

    def stop(self) -> None:
        for s in self.services.values():
            if s.popen.poll() is None:
                s.popen.terminate()
        for s in self.services.values():
            try:
                s.popen.wait(20)
            except subprocess.TimeoutExpired:
                s.popen.kill()
                s.popen.wait(10)


def schema_of(settings: Settings, service: str) -> str:
    return f"{settings.db_schema or 'qa'}_{service}"


def _has_main(service: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"qastream_{service}.__main__") is not None


def _launch(name: str, port: int, env: dict[str, str]) -> Service:
    popen = subprocess.Popen(
        [sys.executable, "-m", f"qastream_{name}"],
        cwd=REPO,
        env={**env, "QA_HTTP_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    svc = Service(name, port, popen)
    assert popen.stdout is not None
    # Drained, so a full pipe never stalls the service.
    threading.Thread(target=shutil.copyfileobj, args=(popen.stdout, svc.log), daemon=True).start()
    return svc


async def start(
    settings: Settings,
    tenant: str = "acme",
    people: Iterable[Person] = PEOPLE,
    *,
    extra_env: dict[str, str] | None = None,
    within: float = 300.0,
) -> LiveStack:
    """Starts every service of the pipeline that exists, then the tenant and one key per person."""
    names = [n for n in PIPELINE if _has_main(n)]
    ports = {n: free_port() for n in names}
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    secret = secrets.token_urlsafe(32)
    console = urls.get("reporting", "")
    common = {
        **os.environ,
        **settings_env(settings),
        "QA_SESSION_SECRET": secret,
        "QA_CORS_ORIGINS": console,
        "QA_SERVICE_URLS": json.dumps(urls),
        **(extra_env or {}),
    }
    await ensure_topics(settings)
    services = {
        name: _launch(name, ports[name], {**common, "QA_DB_SCHEMA": schema_of(settings, name)})
        for name in names
    }
    stack = LiveStack(settings, tenant, services, secret=secret)
    try:
        await asyncio.gather(*(ready(s.name, s.url, s.popen, s.output, within) for s in services.values()))
        stack.keys = await _tenant_and_keys(settings, tenant, people)
        await _keys_reached_everyone(stack, within)
    except BaseException:
        stack.stop()
        raise
    return stack


async def _tenant_and_keys(settings: Settings, tenant: str, people: Iterable[Person]) -> dict[str, str]:
    """As `qa tenant create` and `qa key create` do: ingest's rows and outbox, which its relay publishes."""
    from qastream_ingest import service
    from qastream_ingest.app import SPEC

    ingest_settings = settings.model_copy(update={"db_schema": schema_of(settings, "ingest")})
    runtime = ServiceRuntime(SPEC, ingest_settings)
    try:
        await migrate(ingest_settings, runtime.schema, SPEC.migrations)
        keys: dict[str, str] = {}
        async with runtime.unit_of_work() as uow:
            await service.create_tenant(uow, tenant, tenant.title())
            for p in people:
                _, keys[p.name] = await service.create_key(uow, tenant, p.role, p.agent_id, p.team)
        return keys
    finally:
        await runtime.engine.dispose()


async def add_tenant(stack: LiveStack, tenant: str, people: Iterable[Person], within: float = 300.0) -> None:
    """Another tenant beside the stack's, its people's keys in `stack.keys` under their names."""
    stack.keys.update(await _tenant_and_keys(stack.settings, tenant, people))
    await _keys_reached_everyone(stack, within)


async def _keys_reached_everyone(stack: LiveStack, within: float) -> None:
    """Every service has applied qa.tenants up to the last key issued (each answers GET /v1/session)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = stack.auth(list(stack.keys)[-1])
    async with httpx.AsyncClient(timeout=10) as client:
        for svc in stack.services.values():
            while (await client.get(svc.url + "/v1/session", headers=last)).status_code != 200:
                if loop.time() > deadline:
                    raise AssertionError(f"{svc.name} never learned the keys:\n{svc.output()}")
                await asyncio.sleep(0.2)


def recent(conversations: list[dict[str, Any]], *, end: datetime | None = None) -> list[dict[str, Any]]:
    """The conversations moved in time so the newest ends `end` (now): the console's ranges are recent."""
    stamps = [datetime.fromisoformat(c["ended_at"]) for c in conversations if c.get("ended_at")]
    if not stamps:
        return conversations
    shift = (end or datetime.now(UTC) - timedelta(minutes=5)) - max(stamps)

    def moved(value: Any) -> Any:
        return (datetime.fromisoformat(value) + shift).isoformat() if value else value

    out = []
    for c in conversations:
        c = {**c, "started_at": moved(c.get("started_at")), "ended_at": moved(c.get("ended_at"))}
        c["turns"] = [{**t, "ts": moved(t.get("ts"))} for t in c["turns"]]
        out.append(c)
    return out


def star(n: int, *, agents: dict[str, str] | None = None, prefix: str | None = None) -> list[dict[str, Any]]:
    """n real STAR conversations (JSON), recent, under fresh ids; `agents` maps agent id -> team for
    a round-robin reassignment, so the test's people own some of them."""
    from qastream_ingest.importers import parse_star
    from qastream_shared.conversation import Conversation
    from qastream_shared.testing import STAR

    prefix = prefix or uuid.uuid4().hex[:6]
    out: list[dict[str, Any]] = []
    with STAR.open("rb") as fh:
        for conv in parse_star(fh):
            if len(out) == n:
                break
            if not isinstance(conv, Conversation):
                continue  # a record the importer refused; the file's others are enough
            i = len(out)
            body = conv.model_dump(mode="json")
            body["conversation_id"] = f"{prefix}-{conv.conversation_id}"
            if agents:
                agent, team = list(agents.items())[i % len(agents)]
                body["agent_ids"], body["team"] = [agent], team
            out.append(body)
    return recent(out)


async def ingest(
    stack: LiveStack, conversations: list[dict[str, Any]], *, batch: int = 500, who: str = "admin"
) -> None:
    async with httpx.AsyncClient(base_url=stack.url("ingest"), timeout=60) as client:
        for i in range(0, len(conversations), batch):
            r = await client.post(
                "/v1/conversations",
                json={"conversations": conversations[i : i + batch]},
                headers=stack.auth(who),
            )
            assert r.status_code in (200, 202), r.text
