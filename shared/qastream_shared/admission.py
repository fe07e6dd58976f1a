"""Admission: the one place a consumed batch is checked before a handler sees it.

Each service declares which event types each topic it consumes may carry (`ServiceSpec.accepts`). Every
event of a batch that breaks that, or names a tenant the service does not know, is dead-lettered with its
reason in the same transaction as the rest of the batch: one pass, no rollback, no per-event round trip.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from qastream_shared.events import PLATFORM_TENANT, Envelope, Event
from qastream_shared.settings import Settings
from qastream_shared.topics import physical


class TenantLookup(Protocol):
    """`TenantDirectory` (a copy of qa.tenants) in most services; `OwnTenants` in ingest, which owns it."""

    async def unknown(self, session: AsyncSession, tenant_ids: set[str]) -> set[str]: ...


class Admission:
    def __init__(
        self,
        accepts: Mapping[str, Collection[type[Event]]],
        settings: Settings,
        tenants: TenantLookup | None,
    ) -> None:
        self.topics = {physical(t, settings): t for t in accepts}
        self.types = {
            physical(t, settings): frozenset(m.TYPE for m in models) for t, models in accepts.items()
        }
        self.tenants = tenants

    async def refusals(self, session: AsyncSession, events: list[Envelope]) -> dict[str, str]:
        """event id → why it is refused, for every event of the batch that may not be handled."""
        reasons: dict[str, str] = {}
        for env in events:
            topic = env.origin[0] if env.origin else None
            allowed = self.types.get(topic) if topic else None
            if allowed is not None and env.type not in allowed:
                reasons[env.id] = f"{env.type} does not belong on {self.topics[topic or '']}"
        if self.tenants is not None:
            # Platform events (PartitionHeartbeat) concern no tenant; their topic's type check still applies.
            tenants = {e.tenant for e in events if e.id not in reasons and e.tenant != PLATFORM_TENANT}
            unknown = await self.tenants.unknown(session, tenants)
            for env in events:
                if env.tenant in unknown and env.id not in reasons:
                    reasons[env.id] = f"unknown tenant {env.tenant!r}"
        return reasons
