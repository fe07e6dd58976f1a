"""Any service as a live process for tests and benchmarks: real process, real port, real broker and database.

Not a conftest (pytest does not load it by itself). `SERVICES` lists every service the HTTP contract tests
(test_http_contract.py) run against: a new service gets them by adding one line.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from qastream_shared.events import Role
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import eventually, publish_tenant_keys
from qastream_shared.topics import ensure_topics
from tests.integration.conftest import Proc

# Scoped keys see a subset of the tenant: the agent key is agent-1's, the team lead's is team-a's.
AGENT_ID = "agent-1"
TEAM = "team-a"


@dataclass(frozen=True)
class ServiceUnderTest:
    name: str  # ServiceSpec.name; the process is `python -m qastream_<name>`
    body: tuple[str, str] | None  # an operation that reads a JSON body, (method, path); None: it has none
    authenticated: str  # a GET any role may call, to tell when a new key has reached the service
    # Schemathesis checks this service is not yet held to, each with the reason. `positive_data_acceptance`
    # already allows the rules no JSON Schema can state for any service (schemathesis_hooks: issued cursors,
    # inverted ranges); a service listing it has rules of its own that its schema cannot say.
    unchecked: tuple[str, ...] = ()
    # Paths schemathesis does not call, each with the reason and where else it is tested.
    unfuzzed: tuple[str, ...] = ()

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
        # A calibration's deadline must be in the future; reviewer ids are unique within a list of objects;
        # a scorecard's scales, scorers and their params depend on each other. JSON Schema cannot state these: schema-valid input can be a 422.
        unchecked=("positive_data_acceptance",),
    ),
    ServiceUnderTest(
        "coaching",
        ("POST", "/v1/rules"),
        "/v1/tasks",
        # A webhook URL must resolve, to a public address: schema-valid input can be a 422.
        unchecked=("positive_data_acceptance",),
    ),
    ServiceUnderTest(
        "reporting",
        None,
        "/v1/metrics/quality",
        # A valid request opens an event stream that never ends, so every case would wait out the request
        # timeout (15+ minutes a run); its refusals, scoping and events are tested in test_reporting.py.
        unfuzzed=("/v1/stream",),
    ),
)


async def ready(
    name: str, url: str, popen: subprocess.Popen[bytes], output: Callable[[], str], within: float
) -> None:
    """Until the process answers /readyz with 200; fails with its output if it exits or the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while True:
            if popen.poll() is not None:
                raise AssertionError(f"{name} exited with {popen.returncode}:\n{output()}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if loop.time() > deadline:
                raise AssertionError(f"{name} not ready within {within}s:\n{output()}")
            await asyncio.sleep(0.1)


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
    issued = await publish_tenant_keys(settings, tenant_id, [(role, scope_of(role)) for role in Role])
    return Tenant(
        tenant_id,
        keys={role: i.key for role, i in zip(Role, issued, strict=True)},
        key_ids={role: i.key_id for role, i in zip(Role, issued, strict=True)},
    )


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
        assert self.proc is not None
        await ready(self.module, self.url, self.proc.popen, self.output, within)

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
