"""qa.samples → AutoQA reviews on qa.reviews, and reviewer assignments from manual samples. Thin: group the
batch by tenant, call the use cases."""

from __future__ import annotations

from qastream_scoring import service
from qastream_scoring.autoqa_runner import runner_of
from qastream_scoring.stores import assignment_intake
from qastream_shared.conversation import Conversation
from qastream_shared.events import ConversationSampled, Envelope, Purpose
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.unit_of_work import Handler, UnitOfWork


def make_handler(runtime: ServiceRuntime) -> Handler:
    runner = runner_of(runtime)

    async def handle(uow: UnitOfWork, events: list[Envelope]) -> None:
        """Admission (ServiceSpec.accepts) has let through only ConversationSampled of known tenants."""
        stored: dict[str, list[Conversation]] = {}
        auto: dict[str, list[tuple[Conversation, float | None, Envelope | None]]] = {}
        manual: dict[str, list[tuple[ConversationSampled, Envelope]]] = {}
        for env in events:
            sampled = env.data
            assert isinstance(sampled, ConversationSampled)
            stored.setdefault(env.tenant, []).append(sampled.conversation)
            if sampled.purpose is Purpose.auto:
                auto.setdefault(env.tenant, []).append(
                    (sampled.conversation, sampled.inclusion_probability, env)
                )
            else:
                manual.setdefault(env.tenant, []).append((sampled, env))
        for tenant, convs in stored.items():
            await service.store_conversations(uow, tenant, convs)
        for tenant, items in auto.items():
            settings, card = await service.config(uow, tenant)
            await service.auto_reviews(uow, tenant, items, settings=settings, card=card, runner=runner)
        for tenant, samples in manual.items():
            _, card = await service.config(uow, tenant)
            await assignment_intake.create_from_samples(uow, tenant, samples, card)

    return handle
