"""A live ingest service for integration tests and the benchmark: real process, real port, real servers.

Not a conftest (pytest does not load it by itself): test modules and bench/ingest.py import it.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from qastream_ingest import service
from qastream_ingest.app import SPEC
from qastream_shared.events import Role
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import star_records
from qastream_shared.topics import ensure_topics
from tests.integration.conftest import Proc

# Scoped keys see a subset of the tenant: the agent key is agent-1's, the team lead's is team-a's.
AGENT_ID = "agent-1"
TEAM = "team-a"


@dataclass
class Tenant:
    tenant_id: str
    keys: dict[Role, str] = field(default_factory=dict)
    key_ids: dict[Role, str] = field(default_factory=dict)

    def auth(self, role: Role = Role.admin) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


async def create_tenants(settings: Settings, *tenant_ids: str) -> dict[str, Tenant]:
    """Migrates ingest's schema and issues one key per role for each tenant, as `qa key create` does."""
    runtime = ServiceRuntime(SPEC, settings)
    try:
        await migrate(settings, runtime.schema, SPEC.migrations)
        await ensure_topics(settings)
        out: dict[str, Tenant] = {}
        async with runtime.unit_of_work() as uow:
            for tid in tenant_ids:
                await service.create_tenant(uow, tid, tid.title())
                tenant = Tenant(tid)
                for role in Role:
                    agent = AGENT_ID if role is Role.agent else None
                    team = TEAM if role is Role.team_lead else None
                    tenant.key_ids[role], tenant.keys[role] = await service.create_key(
                        uow, tid, role, agent, team
                    )
                out[tid] = tenant
        return out
    finally:
        await runtime.engine.dispose()


Launcher = Callable[[list[str], dict[str, str]], Proc]


class LiveIngest:
    """`python -m qastream_ingest` on a free port; its output is drained so a full pipe never stalls it."""

    def __init__(self, launch: Launcher, port: int | None = None) -> None:
        self.launch = launch
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Proc | None = None
        self.log = io.BytesIO()

    async def start(self, within: float = 60.0) -> None:
        self.proc = self.launch(["-m", "qastream_ingest"], {"QA_HTTP_PORT": str(self.port)})
        out = self.proc.popen.stdout
        assert out is not None
        threading.Thread(target=shutil.copyfileobj, args=(out, self.log), daemon=True).start()
        await self.wait_ready(within)

    async def wait_ready(self, within: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            while True:
                assert self.proc is not None
                if self.proc.popen.poll() is not None:
                    raise AssertionError(f"ingest exited with {self.proc.popen.returncode}:\n{self.output()}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                if loop.time() > deadline:
                    raise AssertionError(f"ingest not ready within {within}s:\n{self.output()}")
                await asyncio.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.popen.pid

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def output(self) -> str:
        return self.log.getvalue().decode(errors="replace")[-5000:]


def star_stream(prefix: str | None = None) -> Iterator[dict[str, Any]]:
    """Real STAR conversations, cycled without end, each under a fresh id so none is ever a resend."""
    prefix = prefix or uuid.uuid4().hex[:8]
    records = list(star_records())
    for n in itertools.count():
        yield {**records[n % len(records)], "conversation_id": f"{prefix}-{n}"}


def take(stream: Iterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return list(itertools.islice(stream, n))
