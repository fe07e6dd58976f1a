"""A live ingest service for integration tests and the benchmark: real process, real port, real servers.

Not a conftest (pytest does not load it by itself): test modules and bench/ingest.py import it.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

from qastream_ingest import service
from qastream_ingest.app import SPEC
from qastream_shared.events import Role
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import star_records
from qastream_shared.topics import ensure_topics
from tests.integration.live_service import Launcher, LiveService, Tenant, scope_of


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
                    scope = scope_of(role)
                    tenant.key_ids[role], tenant.keys[role] = await service.create_key(
                        uow, tid, role, scope.get("agent_id"), scope.get("team")
                    )
                out[tid] = tenant
        return out
    finally:
        await runtime.engine.dispose()


class LiveIngest(LiveService):
    def __init__(self, launch: Launcher, port: int | None = None) -> None:
        super().__init__("qastream_ingest", launch, port)


def star_stream(prefix: str | None = None) -> Iterator[dict[str, Any]]:
    """Real STAR conversations, cycled without end, each under a fresh id so none is ever a resend."""
    prefix = prefix or uuid.uuid4().hex[:8]
    records = list(star_records())
    for n in itertools.count():
        yield {**records[n % len(records)], "conversation_id": f"{prefix}-{n}"}


def take(stream: Iterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return list(itertools.islice(stream, n))
