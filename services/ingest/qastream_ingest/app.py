"""The ingest service: HTTP and Kafka in, redacted conversations out on qa.conversations."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from qastream_ingest.api import BatchIn, router
from qastream_ingest.handlers import make_handler
from qastream_ingest.heartbeats import send_heartbeats
from qastream_ingest.service import Redactors
from qastream_ingest.tables import metadata, tables
from qastream_shared.conversation import Conversation
from qastream_shared.events import (
    ApiKeyIssued,
    ApiKeyRevoked,
    ConversationIngested,
    ConversationUpdated,
    CsatRecorded,
    InboundConversation,
    PartitionHeartbeat,
    TenantUpserted,
)
from qastream_shared.runtime import ServiceSpec, create_app
from qastream_shared.settings import Settings, get_settings
from qastream_shared.topics import CONVERSATIONS, INBOUND_CONVERSATIONS, TENANTS

SPEC = ServiceSpec(
    name="ingest",
    metadata=metadata,
    tables=tables,
    migrations=str(Path(__file__).parent / "migrations"),
    consumes=[INBOUND_CONVERSATIONS],
    accepts={INBOUND_CONVERSATIONS: [InboundConversation]},
    produces={
        CONVERSATIONS: [ConversationIngested, ConversationUpdated, CsatRecorded, PartitionHeartbeat],
        TENANTS: [TenantUpserted, ApiKeyIssued, ApiKeyRevoked],
    },
    handler=make_handler,
    tasks=[send_heartbeats],
    uses_directory=False,
    owns_tenants=True,
    # The request body is parsed by hand (per-item results), so its models are published explicitly.
    openapi_models=[Conversation, BatchIn],
    routers=[router],
    title="qastream ingest",
)


def build(settings: Settings | None = None, *, consume: bool = True) -> FastAPI:
    settings = settings or get_settings()
    app = create_app(SPEC, settings, consume=consume)
    app.state.redactors = Redactors(settings.key_pepper)
    return app
