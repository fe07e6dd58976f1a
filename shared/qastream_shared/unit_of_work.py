"""What a handler gets and may raise: the batch's unit of work (session + outbox), and its refusals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_shared.events import Envelope, Event
from qastream_shared.outbox import add_rows, outbox_row
from qastream_shared.settings import Settings


class Rejected(Exception):
    """Raised by a handler for events that are well-formed but can never be processed (e.g. unknown tenant).

    The batch is rolled back and redone without them; each is dead-lettered with its reason.
    """

    def __init__(
        self, event_id: str | None = None, reason: str = "", *, many: dict[str, str] | None = None
    ) -> None:
        self.reasons = dict(many or {})
        if event_id is not None:
            self.reasons[event_id] = reason
        super().__init__("; ".join(self.reasons.values()))


class UndeclaredEvent(Exception):
    """A service published an event type its ServiceSpec does not declare for that topic: a bug."""


@dataclass
class UnitOfWork:
    """What a handler gets: the batch's session, and an outbox to publish follow-up events through."""

    session: AsyncSession
    settings: Settings
    outbox_table: Table
    schema: str
    pending: list[dict[str, Any]] = field(default_factory=list)
    # Called when the transaction does not commit, so handlers can drop in-memory state it had changed.
    on_rollback: list[Callable[[], None]] = field(default_factory=list)
    # Called once the transaction has committed, for work that may only start from committed effects.
    on_commit: list[Callable[[], None]] = field(default_factory=list)
    # The service's declared output (ServiceSpec.produces), which the published AsyncAPI document is made
    # from; None leaves publishing unchecked (tools and tests that are no service).
    produces: Mapping[str, Sequence[type[Event]]] | None = None

    def publish(self, topic: str, env: Envelope) -> None:
        if self.produces is not None and type(env.data) not in self.produces.get(topic, ()):
            raise UndeclaredEvent(f"{env.type} on {topic} is not in the service's ServiceSpec.produces")
        self.pending.append(outbox_row(topic, env, self.settings))

    async def flush(self) -> None:
        await add_rows(self.session, self.outbox_table, self.pending, self.schema)
        self.pending.clear()


Handler = Callable[[UnitOfWork, list[Envelope]], Awaitable[None]]
