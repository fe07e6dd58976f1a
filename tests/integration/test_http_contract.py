"""What every service's HTTP API promises, checked against each live service (live_service.SERVICES)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from qastream_shared.events import Role
from qastream_shared.http import MAX_BODY_BYTES
from qastream_shared.settings import Settings
from qastream_shared.testing import isolated_settings
from tests.integration import schemathesis_hooks
from tests.integration.conftest import Proc
from tests.integration.conftest_ingest import create_tenants
from tests.integration.live_service import SERVICES, LiveService, ServiceUnderTest, Tenant, publish_tenant

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = 40  # generated cases per operation, beside the coverage phase's own (the issue asks for 40)


class Live:
    def __init__(self, service: ServiceUnderTest, process: LiveService, tenant: Tenant) -> None:
        self.service = service
        self.process = process
        self.tenant = tenant
        self.url = process.url


@pytest.fixture(scope="module", params=SERVICES, ids=lambda s: s.name)
async def live(
    request: pytest.FixtureRequest, database_url: str, kafka_bootstrap: str
) -> AsyncIterator[Live]:
    service: ServiceUnderTest = request.param
    settings: Settings = isolated_settings(database_url, kafka_bootstrap)
    if service.name == "ingest":
        tenant = (await create_tenants(settings, "fuzz"))["fuzz"]
    else:
        tenant = await publish_tenant(settings, "fuzz")
    process = LiveService(service.module, lambda args, env: Proc(args, settings, env))
    try:
        await process.start(within=180)  # a busy machine: migrations, topics, a consumer group to join
        await process.wait_key(service.authenticated, tenant.auth())
        yield Live(service, process, tenant)
    finally:
        process.stop()


async def chunks(body: bytes) -> AsyncIterator[bytes]:
    """The body without a Content-Length (chunked), so only reading it can tell its size."""
    for start in range(0, len(body), 1 << 20):
        yield body[start : start + (1 << 20)]


async def test_a_body_over_the_limit_is_refused_with_413_naming_it(live: Live) -> None:
    if live.service.body is None:
        pytest.skip(f"no operation of {live.service.name} reads a body")
    method, path = live.service.body
    big = b'{"padding": "' + b"x" * MAX_BODY_BYTES + b'"}'
    async with httpx.AsyncClient(base_url=live.url, timeout=60, headers=live.tenant.auth()) as c:
        for content in (big, chunks(big)):
            r = await c.request(method, path, content=content, headers={"content-type": "application/json"})
            assert r.status_code == 413, (type(content), r.status_code, r.text[:300])
            assert r.headers["content-type"] == "application/problem+json"
            assert str(MAX_BODY_BYTES) in r.json()["detail"]


def schemathesis_cli(live: Live, *, examples: int, phases: str) -> subprocess.CompletedProcess[str]:
    """`schemathesis run -c all` against the live service, as the issue's audit ran it."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{live.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(examples),
        "--phases",
        phases,
        "--header",
        f"Authorization: Bearer {live.tenant.keys[Role.admin]}",
        "--seed",
        "1",
        "--generation-deterministic",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    # The built-in check gives way to ours, which knows the rules JSON Schema cannot state (hooks module).
    excluded = {*live.service.unchecked, "positive_data_acceptance"}
    if "positive_data_acceptance" in live.service.unchecked:
        excluded.add(schemathesis_hooks.NAME)
    command += ["--exclude-checks", ",".join(sorted(excluded))]
    for path in live.service.unfuzzed:
        command += ["--exclude-path", path]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": schemathesis_hooks.__name__, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as scratch:  # its cache of failures stays out of the repository
        return subprocess.run(
            command, capture_output=True, text=True, timeout=1200, check=False, cwd=scratch, env=env
        )


@pytest.mark.timeout(1800)
async def test_schemathesis_finds_nothing(live: Live) -> None:
    """Every operation, valid and invalid data, every check: no 500, no undocumented status or content type,
    nothing the schema allows refused, nothing it forbids accepted, 405 with Allow, 401 without a key."""
    result = await asyncio.to_thread(
        schemathesis_cli, live, examples=EXAMPLES, phases="examples,coverage,fuzzing"
    )
    failures = result.stdout[result.stdout.find("FAILURES") :]
    assert result.returncode == 0, failures[:30000] + result.stderr[-3000:] + live.process.output()
