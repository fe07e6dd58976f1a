"""qa.samples → AutoQA reviews on qa.reviews. Thin: group the batch by tenant, call the use case."""

from __future__ import annotations

from qastream_scoring import service
from qastream_scoring.autoqa_runner import runner_of
from qastream_shared.consumer import Handler, Rejected, UnitOfWork
from qastream_shared.conversation import Conversation
from qastream_shared.events import ConversationSampled, Envelope, Purpose
from qastream_shared.runtime import ServiceRuntime


def make_handler(runtime: ServiceRuntime) -> Handler:
    directory = runtime.directory
    assert directory is not None
    runner = runner_of(runtime)

    async def handle(uow: UnitOfWork, events: list[Envelope]) -> None:
        stored: dict[str, list[Conversation]] = {}
        auto: dict[str, list[tuple[Conversation, float | None, Envelope | None]]] = {}
        known: set[str] = set()  # one directory look-up per tenant and batch, not one per event
        for env in events:
            if not isinstance(env.data, ConversationSampled):
                raise Rejected(env.id, f"{env.type} does not belong on qa.samples")
            if env.tenant not in known:
                if not await directory.tenant_exists(uow.session, env.tenant):
                    raise Rejected(env.id, f"unknown tenant {env.tenant!r}")
                known.add(env.tenant)
            sampled = env.data
            stored.setdefault(env.tenant, []).append(sampled.conversation)
            if sampled.purpose is Purpose.auto:
                auto.setdefault(env.tenant, []).append(
                    (sampled.conversation, sampled.inclusion_probability, env)
                )
        for tenant, convs in stored.items():
            await service.store_conversations(uow, tenant, convs)
        for tenant, items in auto.items():
            settings, card = await service.config(uow, tenant)
            await service.auto_reviews(uow, tenant, items, settings=settings, card=card, runner=runner)

    return handle
