"""The sampler service: conversations and auto reviews in, sampling decisions out on qa.samples."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from qastream_sampler.api import router
from qastream_sampler.handlers import idle_tick, make_handler, reap_snapshots
from qastream_sampler.plans import PLAN_MODELS
from qastream_sampler.tables import metadata, tables
from qastream_shared.events import (
    ConversationIngested,
    ConversationSampled,
    ConversationUpdated,
    CsatRecorded,
    PartitionHeartbeat,
    ReviewRevised,
    ReviewSubmitted,
)
from qastream_shared.runtime import ServiceSpec, create_app
from qastream_shared.settings import Settings
from qastream_shared.topics import CONVERSATIONS, REVIEWS, SAMPLES

SPEC = ServiceSpec(
    name="sampler",
    metadata=metadata,
    tables=tables,
    migrations=str(Path(__file__).parent / "migrations"),
    consumes=[CONVERSATIONS, REVIEWS],
    accepts={
        CONVERSATIONS: [ConversationIngested, CsatRecorded, ConversationUpdated, PartitionHeartbeat],
        # Revisions of human reviews are accepted but never trigger sampling.
        REVIEWS: [ReviewSubmitted, ReviewRevised],
    },
    produces={SAMPLES: [ConversationSampled]},
    handler=make_handler,
    routers=[router],
    tasks=[idle_tick, reap_snapshots],
    title="qastream sampler",
    # Each batch pays fixed costs (plan and tail checks, closing due slots across tenants, commit), so
    # bigger batches decide more per second; sampling latency is measured in minutes, not milliseconds.
    consumer_batch_size=4000,
    openapi_models=PLAN_MODELS,
)


def build(settings: Settings | None = None, *, consume: bool = True) -> FastAPI:
    return create_app(SPEC, settings, consume=consume)
