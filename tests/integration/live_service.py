"""Any service as a live process for tests and benchmarks: real process, real port, real broker and database.

Not a conftest (pytest does not load it by itself). `SERVICES` lists every service the HTTP contract tests
(test_http_contract.py) run against: a new service gets them by adding one line.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from qastream_shared.events import ApiKeyIssued, Envelope, Role, TenantUpserted
from qastream_shared.keys import generate_key
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import eventually, produce_envelopes
from qastream_shared.topics import TENANTS, ensure_topics, physical
from tests.integration.conftest import Proc

# Scoped keys see a subset of the tenant: the agent key is agent-1's, the team lead's is team-a's.
AGENT_ID = "agent-1"
TEAM = "team-a"


@dataclass(frozen=True)
class ServiceUnderTest:
    name: str  # ServiceSpec.name; the process is `python -m qastream_<name>`
    body: tuple[str, str]  # an operation that reads a JSON body: (method, path)
    authenticated: str  # a GET any role may call, to tell when a new key has reached the service
    # Schemathesis checks this service is not yet held to, each with the reason (see the report).
    unchecked: tuple[str, ...] = ()
    # Why schemathesis is not run against this service yet (None: it is).
    not_fuzzed: str | None = None

    @property
    def module(self) -> str:
        return f"qastream_{self.name}"


SERVICES = (
    ServiceUnderTest(
        "ingest",
        ("POST", "/v1/conversations"),
        "/v1/tenant",
        # A redaction policy's custom patterns must have unique names: JSON Schema cannot state that.
        unchecked=("positive_data_acceptance",),
    ),
    ServiceUnderTest(
        "sampler",
        ("POST", "/v1/plans"),
        "/v1/samples",
        # A plan edit is a free-form object of changes, and plans have cross-field rules (slots <= quota,
        # overlapping plans' priorities) that JSON Schema cannot state: schema-valid edits can be a 422.
        unchecked=("positive_data_acceptance",),
    ),
    ServiceUnderTest(
        "scoring",
        ("PUT", "/v1/scorecards/fuzz"),
        "/v1/scorecards",
        not_fuzzed=(
            "the review workflow's endpoints (assignments, disputes, calibrations) still give schemathesis "
            "a 500 and schema gaps (11 findings on 2026-12-01); scorecards and reviews were clean"
        ),
    ),
)


@dataclass
class Tenant:
    tenant_id: str
    keys: dict[Role, str] = field(default_factory=dict)
    key_ids: dict[Role, str] = field(default_factory=dict)

    def auth(self, role: Role = Role.admin) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


def scope_of(role: Role) -> dict[str, str]:
    return {"agent_id": AGENT_ID} if role is Role.agent else {"team": TEAM} if role is Role.team_lead else {}


async def publish_tenant(settings: Settings, tenant_id: str) -> Tenant:
    """A tenant and one key per role on qa.tenants, as ingest publishes them, for services other than ingest."""
    await ensure_topics(settings)
    tenant = Tenant(tenant_id)
    envs = [
        Envelope(
            data=TenantUpserted(tenant_id=tenant_id, name=tenant_id.title()),
            source="ingest",
            tenant=tenant_id,
            key=tenant_id,
        )
    ]
    for role in Role:
        issued = generate_key(settings.key_pepper)
        tenant.keys[role], tenant.key_ids[role] = issued.key, issued.key_id
        envs.append(
            Envelope(
                data=ApiKeyIssued(
                    key_id=issued.key_id, key_hash=issued.key_hash, role=role, **scope_of(role)
                ),
                source="ingest",
                tenant=tenant_id,
                key=f"{tenant_id}:key:{issued.key_id}",
            )
        )
    await produce_envelopes(settings, physical(TENANTS, settings), envs)
    return tenant


Launcher = Callable[[list[str], dict[str, str]], Proc]


class LiveService:
    """`python -m <module>` on a free port; its output is drained so a full pipe never stalls it."""

    def __init__(self, module: str, launch: Launcher, port: int | None = None) -> None:
        self.module = module
        self.launch = launch
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Proc | None = None
        self.log = io.BytesIO()

    async def start(self, within: float = 60.0) -> None:
        self.proc = self.launch(["-m", self.module], {"QA_HTTP_PORT": str(self.port)})
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
                    raise AssertionError(
                        f"{self.module} exited with {self.proc.popen.returncode}:\n{self.output()}"
                    )
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                if loop.time() > deadline:
                    raise AssertionError(f"{self.module} not ready within {within}s:\n{self.output()}")
                await asyncio.sleep(0.1)

    async def wait_key(self, path: str, headers: dict[str, str], within: float = 60.0) -> None:
        """Until the service knows the key (it arrives through the tenant directory)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10, headers=headers) as client:

            async def known() -> bool:
                return (await client.get(path)).status_code != 401

            await eventually(known, within=within)

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
