"""The ingest service: HTTP and Kafka in, redacted conversations out on qa.conversations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from qastream_shared.conversation import Conversation
from qastream_shared.runtime import ServiceSpec, create_app
from qastream_shared.settings import Settings, get_settings
from qastream_shared.topics import INBOUND_CONVERSATIONS

from qastream_ingest.api import BatchIn, router
from qastream_ingest.handlers import make_handler
from qastream_ingest.service import Redactors
from qastream_ingest.tables import metadata, tables

SPEC = ServiceSpec(
    name="ingest",
    metadata=metadata,
    tables=tables,
    migrations=str(Path(__file__).parent / "migrations"),
    consumes=[INBOUND_CONVERSATIONS],
    handler=make_handler,
    uses_directory=False,  # ingest owns the tenant directory
    routers=[router],
    title="qastream ingest",
)


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
        for model in (Conversation, BatchIn):
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(js.pop("$defs", {}))
            components[model.__name__] = js
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
