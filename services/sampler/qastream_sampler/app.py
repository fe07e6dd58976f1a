"""The sampler service: conversations and auto reviews in, sampling decisions out on qa.samples."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from qastream_sampler.api import router
from qastream_sampler.handlers import idle_tick, make_handler
from qastream_sampler.tables import metadata, tables
from qastream_shared.runtime import ServiceSpec, create_app
from qastream_shared.settings import Settings
from qastream_shared.topics import CONVERSATIONS, REVIEWS

SPEC = ServiceSpec(
    name="sampler",
    metadata=metadata,
    tables=tables,
    migrations=str(Path(__file__).parent / "migrations"),
    consumes=[CONVERSATIONS, REVIEWS],
    handler=make_handler,
    routers=[router],
    tasks=[idle_tick],
    title="qastream sampler",
)


def build(settings: Settings | None = None, *, consume: bool = True) -> FastAPI:
    return create_app(SPEC, settings, consume=consume)
