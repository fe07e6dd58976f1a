"""Per-process copies of what every batch reads and rarely changes: a tenant's active rules, its webhook
subscriptions, its teams' leads and the categories already recorded. A write through this process's API drops the tenant's
entries at once; another replica sees the change within TTL_S."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_coaching import rule_store, task_store
from qastream_coaching.rules import Rule
from qastream_coaching.webhooks import store as webhook_store
from qastream_shared.runtime import ServiceRuntime

TTL_S = 2.0
Subscriptions = list[tuple[str, frozenset[str]]]


@dataclass
class ConfigCache:
    rules: dict[str, tuple[float, list[Rule]]] = field(default_factory=dict)
    subscriptions: dict[str, tuple[float, Subscriptions]] = field(default_factory=dict)
    # (tenant, category) pairs known to be stored; only a cache of the categories table, so a pair added by
    # a transaction that rolls back is dropped again (see service.on_reviews).
    categories: set[tuple[str, str]] = field(default_factory=set)

    # (tenant, team) → its lead (None: no lead), from the tenant directory's API keys.
    leads: dict[tuple[str, str], tuple[float, str | None]] = field(default_factory=dict)

    def forget(self, tenant_id: str) -> None:
        self.rules.pop(tenant_id, None)
        self.subscriptions.pop(tenant_id, None)

    async def active_rules(self, session: AsyncSession, tenant_id: str) -> list[Rule]:
        hit = self.rules.get(tenant_id)
        if hit is not None and time.monotonic() - hit[0] < TTL_S:
            return hit[1]
        active = [r for r in (await rule_store.current_rules(session, tenant_id)).values() if not r.paused]
        self.rules[tenant_id] = (time.monotonic(), active)
        return active

    async def subscriptions_of(
        self, session: AsyncSession, tenants: Iterable[str]
    ) -> dict[str, Subscriptions]:
        now = time.monotonic()
        wanted = set(tenants)
        stale = sorted(t for t in wanted if now - self.subscriptions.get(t, (-TTL_S, []))[0] >= TTL_S)
        if stale:
            found = await webhook_store.subscriptions(session, stale)
            for t in stale:
                self.subscriptions[t] = (now, found.get(t, []))
        return {t: self.subscriptions[t][1] for t in wanted}

    async def team_leads(
        self, session: AsyncSession, api_keys: Table, tenant_id: str, teams: Iterable[str | None]
    ) -> dict[str, str]:
        """team → its lead (see task_store.team_leads); a lead key issued or revoked shows within TTL_S."""
        now = time.monotonic()
        wanted = {t for t in teams if t}
        stale = sorted(t for t in wanted if now - self.leads.get((tenant_id, t), (-TTL_S, None))[0] >= TTL_S)
        if stale:
            found = await task_store.team_leads(session, api_keys, tenant_id, stale)
            for t in stale:
                self.leads[(tenant_id, t)] = (now, found.get(t))
        return {t: lead for t in wanted if (lead := self.leads[(tenant_id, t)][1]) is not None}


def cache_of(runtime: ServiceRuntime) -> ConfigCache:
    found = runtime.components.get("config_cache")
    if not isinstance(found, ConfigCache):
        found = runtime.components["config_cache"] = ConfigCache()
    return found
