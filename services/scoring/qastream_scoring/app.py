"""The scoring service: samples in, AutoQA reviews out on qa.reviews; scorecards and reviews over HTTP."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from qastream_scoring.api import router
from qastream_scoring.autoqa_runner import close_on_stop
from qastream_scoring.handlers import make_handler
from qastream_scoring.tables import metadata, tables
from qastream_shared.events import (
    AssignmentChanged,
    CalibrationClosed,
    CalibrationOpened,
    ConversationSampled,
    DisputeOpened,
    DisputeResolved,
    ReviewRevised,
    ReviewSubmitted,
    ScorecardPublished,
)
from qastream_shared.runtime import ServiceSpec, create_app
from qastream_shared.settings import Settings
from qastream_shared.topics import ASSIGNMENTS, CALIBRATIONS, DISPUTES, REVIEWS, SAMPLES, SCORECARDS

SPEC = ServiceSpec(
    name="scoring",
    metadata=metadata,
    tables=tables,
    migrations=str(Path(__file__).parent / "migrations"),
    consumes=[SAMPLES],
    accepts={SAMPLES: [ConversationSampled]},
    produces={
        REVIEWS: [ReviewSubmitted, ReviewRevised],
        ASSIGNMENTS: [AssignmentChanged],
        DISPUTES: [DisputeOpened, DisputeResolved],
        CALIBRATIONS: [CalibrationOpened, CalibrationClosed],
        SCORECARDS: [ScorecardPublished],
    },
    handler=make_handler,
    routers=[router],
    tasks=[close_on_stop],
    # A review costs ~1 ms of CPU, far more than a batch's fixed costs, so batches of a backlog are capped
    # at about a quarter of a second: a full 500 held its records for a second at a held 500/s.
    consumer_batch_target_ms=250,
    title="qastream scoring",
)


def build(settings: Settings | None = None, *, consume: bool = True) -> FastAPI:
    return create_app(SPEC, settings, consume=consume)
