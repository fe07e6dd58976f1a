"""The canonical conversation model: what every source is normalised into before it enters the platform."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_TURNS = 2000
MAX_TURN_CHARS = 100_000
MAX_BATCH_ITEMS = 1000

# Unknown fields are let in (`extra="allow"`) only to be folded into `metadata` once the conversation is
# built, which costs nothing when there are none: a `mode="before"` validator doing the same made pydantic
# build the whole body as Python objects first and roughly doubled the decode of every conversation event.
# The published schema still says what a sender may send: no fields besides the ones below.
FOLDS_UNKNOWN_FIELDS = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})


class Channel(StrEnum):
    chat = "chat"
    email = "email"
    voice = "voice"
    social = "social"


class Role(StrEnum):
    customer = "customer"
    agent = "agent"
    bot = "bot"
    system = "system"


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    text: str = Field(max_length=MAX_TURN_CHARS)
    author: str | None = Field(default=None, max_length=200)
    ts: datetime | None = None


class Feedback(BaseModel):
    """Customer feedback that may arrive with the conversation or long after it."""

    model_config = ConfigDict(extra="forbid")

    csat: int | None = Field(default=None, ge=1, le=5)
    nps: int | None = Field(default=None, ge=0, le=10)
    fcr: bool | None = None


class Conversation(Feedback):
    """One closed customer-service conversation, as the customer's system knows it.

    `conversation_id` is the caller's own id; it is unique per tenant and makes ingestion idempotent.
    Fields the model does not know are kept under `metadata` rather than dropped.
    """

    model_config = FOLDS_UNKNOWN_FIELDS

    conversation_id: str = Field(min_length=1, max_length=200, pattern=r"^[^\s/?#]+$")
    channel: Channel = Channel.chat
    language: str = Field(default="en", min_length=2, max_length=16)
    agent_ids: list[str] = Field(default_factory=list, max_length=50)
    team: str | None = Field(default=None, max_length=200)
    customer_id: str | None = Field(default=None, max_length=200)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    turns: list[Turn] = Field(max_length=MAX_TURNS)
    tags: list[str] = Field(default_factory=list, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)
    escalated: bool = False
    reopened: bool = False

    @model_validator(mode="after")
    def _keep_unknown_fields(self) -> Self:
        unknown = self.__pydantic_extra__
        if unknown:
            metadata = dict(self.metadata)
            for key, value in unknown.items():
                metadata.setdefault(key, value)
            self.__pydantic_extra__ = {}
            self.__pydantic_fields_set__.difference_update(unknown)
            self.metadata = metadata
        return self

    @property
    def agent_id(self) -> str | None:
        """The primary agent, the one reviews and quotas are attributed to."""
        return self.agent_ids[0] if self.agent_ids else None

    def start_time(self) -> datetime | None:
        """When the conversation started: `started_at`, else its first timestamped turn."""
        return self.started_at or next((t.ts for t in self.turns if t.ts), None)

    def end_time(self) -> datetime | None:
        """The one definition of when a conversation ended: `ended_at`, else its last timestamped turn."""
        return self.ended_at or next((t.ts for t in reversed(self.turns) if t.ts), None)

    def handle_seconds(self) -> float | None:
        start, end = self.start_time(), self.end_time()
        if start is None or end is None:
            return None
        return max(0.0, (end - start).total_seconds())
