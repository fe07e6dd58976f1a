"""Conversations streamed in on qa.inbound.conversations: same schema as HTTP, tenant from ce_tenant."""

from __future__ import annotations

from sqlalchemy import select

from qastream_ingest import service
from qastream_ingest.tables import tables
from qastream_shared.consumer import Handler, Rejected, UnitOfWork
from qastream_shared.conversation import Conversation
from qastream_shared.events import Envelope, InboundConversation
from qastream_shared.runtime import ServiceRuntime


def make_handler(runtime: ServiceRuntime) -> Handler:
    redactors = service.Redactors(runtime.settings.key_pepper)
    tenants = tables["tenants"]

    async def handle(uow: UnitOfWork, events: list[Envelope]) -> None:
        by_tenant: dict[str, list[tuple[int, Conversation]]] = {}
        known = set(
            (
                await uow.session.execute(
                    # A NUL would fail the whole query (PostgreSQL text cannot hold one); no tenant has it.
                    select(tenants.c.tenant_id).where(
                        tenants.c.tenant_id.in_({e.tenant for e in events if "\x00" not in e.tenant})
                    )
                )
            ).scalars()
        )
        for i, env in enumerate(events):
            if not isinstance(env.data, InboundConversation):
                raise Rejected(env.id, f"{env.type} does not belong on the inbound topic")
            if env.tenant not in known:
                raise Rejected(env.id, f"unknown tenant {env.tenant!r}")
            conv = Conversation.model_validate(env.data.model_dump(exclude={"TYPE"}))
            if nul := service.nul_field(conv):
                raise Rejected(env.id, f"{nul}: must not contain NUL characters")
            by_tenant.setdefault(env.tenant, []).append((i, conv))
        for tenant, items in by_tenant.items():
            await service.accept(uow, redactors, tenant, items, traceparent=events[items[0][0]].traceparent)

    return handle
