"""Conversations streamed in on qa.inbound.conversations: same schema as HTTP, tenant from ce_tenant."""

from __future__ import annotations

from qastream_ingest import service
from qastream_shared.conversation import Conversation
from qastream_shared.events import Envelope, InboundConversation
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.unit_of_work import Handler, Rejected, UnitOfWork


def make_handler(runtime: ServiceRuntime) -> Handler:
    redactors = service.Redactors(runtime.settings.key_pepper)

    async def handle(uow: UnitOfWork, events: list[Envelope]) -> None:
        """Admission (ServiceSpec.accepts) has let through only InboundConversation of known tenants."""
        by_tenant: dict[str, list[tuple[int, Conversation]]] = {}
        refused: dict[str, str] = {}
        for i, env in enumerate(events):
            assert isinstance(env.data, InboundConversation)
            conv = Conversation.model_validate(env.data.model_dump(exclude={"TYPE"}))
            if nul := service.nul_field(conv):
                refused[env.id] = f"{nul}: must not contain NUL characters"
                continue
            by_tenant.setdefault(env.tenant, []).append((i, conv))
        if refused:
            raise Rejected(many=refused)  # before any write: the batch is redone once without them
        for tenant, items in by_tenant.items():
            traces = {i: events[i].traceparent for i, _ in items}
            await service.accept(uow, redactors, tenant, items, traceparents=traces)

    return handle
