"""Setting up a sampler schema for a test or bench: migrated, with the plans stored before any sampler starts,
so every run (and every replica) decides under the same plans."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qastream_sampler.app import SPEC
from qastream_sampler.tables import plans as plans_table
from qastream_shared.migrations import migrate
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings


async def install_plans(settings: Settings, tenant: str, plans: Iterable[dict[str, Any]]) -> ServiceRuntime:
    """Migrates the sampler's schema and stores `plans` (bodies as `POST /v1/plans` takes) as version 1."""
    runtime = ServiceRuntime(SPEC, settings)
    await migrate(settings, runtime.schema, SPEC.migrations)
    async with runtime.unit_of_work() as uow:
        await uow.session.execute(
            plans_table.insert(),
            [{"tenant_id": tenant, "plan_id": p["plan_id"], "version": 1, "body": p} for p in plans],
        )
    return runtime
