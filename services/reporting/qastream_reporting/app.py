"""The reporting service: every QA topic in, metrics, exports and a live stream out; publishes nothing but
its own dead letters."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from qastream_reporting.api import router
from qastream_reporting.console import router as console_router
from qastream_reporting.export_api import router as export_router
from qastream_reporting.handlers import make_handler
from qastream_reporting.rebuild import SwapGuardedConsumer
from qastream_reporting.stream_api import router as stream_router
from qastream_reporting.tables import metadata, tables
from qastream_shared import events as ev
from qastream_shared.runtime import ServiceSpec, create_app
from qastream_shared.settings import Settings
from qastream_shared.topics import (
    ASSIGNMENTS,
    CALIBRATIONS,
    COACHING,
    CONVERSATIONS,
    DISPUTES,
    REVIEWS,
    SAMPLES,
    SCORECARDS,
)

ACCEPTS: dict[str, list[type[ev.Event]]] = {
    CONVERSATIONS: [ev.ConversationIngested, ev.ConversationUpdated, ev.CsatRecorded, ev.PartitionHeartbeat],
    SAMPLES: [ev.ConversationSampled],
    SCORECARDS: [ev.ScorecardPublished],
    REVIEWS: [ev.ReviewSubmitted, ev.ReviewRevised],
    ASSIGNMENTS: [ev.AssignmentChanged],
    DISPUTES: [ev.DisputeOpened, ev.DisputeResolved],
    CALIBRATIONS: [ev.CalibrationOpened, ev.CalibrationClosed],
    COACHING: [
        ev.CoachingTaskCreated,
        ev.CoachingTaskEvidenceAdded,
        ev.CoachingTaskAcknowledged,
        ev.CoachingTaskCompleted,
        ev.CoachingTaskDismissed,
        ev.CoachingImpactMeasured,
        ev.RiskAlertRaised,
    ],
}

SPEC = ServiceSpec(
    name="reporting",
    metadata=metadata,
    tables=tables,
    migrations=str(Path(__file__).parent / "migrations"),
    consumes=list(ACCEPTS),
    accepts=ACCEPTS,
    handler=make_handler,
    routers=[router, export_router, stream_router, console_router],
    title="qastream reporting",
    # A batch's cost is mostly per conversation, but each also pays a lock, two loads and one append per
    # rollup, whose rows grow with the scopes a batch touches, not with its events: larger batches spread
    # those.
    consumer_batch_size=5000,
    consumer_class=SwapGuardedConsumer,
)


def build(settings: Settings | None = None, *, consume: bool = True) -> FastAPI:
    return create_app(SPEC, settings, consume=consume)
