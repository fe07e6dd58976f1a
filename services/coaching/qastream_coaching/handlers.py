"""Consumed events → use cases. Thin: group the batch by tenant and kind, call the service."""

from __future__ import annotations

from typing import Any

from qastream_coaching import rule_store, service
from qastream_coaching.config_cache import cache_of
from qastream_coaching.history import history_of
from qastream_coaching.known_evidence import known_evidence_of
from qastream_coaching.webhooks.outbound import Outbound
from qastream_shared.events import (
    CalibrationClosed,
    DisputeResolved,
    Envelope,
    ReviewRevised,
    ReviewSubmitted,
    ScorecardPublished,
)
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.unit_of_work import Handler, UnitOfWork


def make_handler(runtime: ServiceRuntime) -> Handler:
    api_keys = runtime.tables["api_keys"]
    cache = cache_of(runtime)
    history = history_of(runtime)
    known = known_evidence_of(runtime)

    async def handle(uow: UnitOfWork, events: list[Envelope]) -> None:
        """Admission (ServiceSpec.accepts) has let through only declared types of known tenants."""
        out = await Outbound.load(uow, {e.tenant for e in events}, cache)
        reviews: dict[str, list[Envelope]] = {}
        disputes: dict[str, list[Envelope]] = {}
        cards: list[dict[str, Any]] = []
        for env in events:
            data = env.data
            if isinstance(data, ReviewSubmitted | ReviewRevised):
                reviews.setdefault(env.tenant, []).append(env)
                out.notify(env)
            elif isinstance(data, DisputeResolved):
                disputes.setdefault(env.tenant, []).append(env)
            elif isinstance(data, CalibrationClosed):
                out.notify(env)
            elif isinstance(data, ScorecardPublished):
                cards.extend(
                    {"tenant_id": env.tenant, "category_id": c.category_id, "critical": c.critical}
                    for c in data.scorecard.categories()
                )
        await rule_store.add_categories(uow.session, cards, overwrite=True)
        for tenant, envs in reviews.items():
            await service.on_reviews(uow, out, tenant, envs, api_keys, cache, history, known)
        for tenant, envs in disputes.items():
            await service.on_disputes(uow, out, tenant, envs, api_keys, cache, known)
        await out.flush()

    return handle
