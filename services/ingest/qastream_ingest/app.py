"""The ingest service: HTTP and Kafka in, redacted conversations out on qa.conversations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from qastream_ingest.api import BatchIn, Problem, router
from qastream_ingest.handlers import make_handler
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
        CONVERSATIONS: [ConversationIngested, ConversationUpdated, CsatRecorded],
        TENANTS: [TenantUpserted, ApiKeyIssued, ApiKeyRevoked],
    },
    handler=make_handler,
    uses_directory=False,
    owns_tenants=True,
    routers=[router],
    title="qastream ingest",
)


REF = "#/components/schemas/"


def publish_models(components: dict[str, Any], *models: type[BaseModel]) -> None:
    """Adds `models` and their definitions to the OpenAPI components without replacing a different one.

    Names are unique per module in Python but global in OpenAPI: a turn's speaker `Role` must not
    overwrite an API key's `Role`, so a clashing definition is published as `Conversation<Name>`.
    """
    ours: dict[str, Any] = {}
    for model in models:
        js = model.model_json_schema(ref_template=REF + "{model}")
        ours.update(js.pop("$defs", {}))
        ours[model.__name__] = js
    renames = {n: f"Conversation{n}" for n, d in ours.items() if n in components and components[n] != d}
    text = orjson.dumps(ours).decode()
    for old, new in renames.items():
        text = text.replace(f'"{REF}{old}"', f'"{REF}{new}"')
    for name, definition in orjson.loads(text).items():
        components[renames.get(name, name)] = definition


def build(settings: Settings | None = None, *, consume: bool = True) -> FastAPI:
    settings = settings or get_settings()
    app = create_app(SPEC, settings, consume=consume)
    app.state.redactors = Redactors(settings.key_pepper)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        # The request body is parsed by hand (per-item results), so publish its models explicitly.
        publish_models(components, Conversation, BatchIn, Problem)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
