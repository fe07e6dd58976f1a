"""The coaching service: reviews and disputes in → coaching tasks, alerts and impact on qa.coaching, and
signed webhooks out; rules, tasks, impact and webhooks over HTTP."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from qastream_coaching.api import router
from qastream_coaching.api_webhooks import router as webhooks_router
from qastream_coaching.handlers import make_handler
from qastream_coaching.rules import Rule
from qastream_coaching.tables import metadata, tables
from qastream_coaching.webhooks.delivery import deliver_webhooks
from qastream_shared.events import (
    CalibrationClosed,
    CalibrationOpened,
    CoachingImpactMeasured,
    CoachingTaskEvent,
    DisputeOpened,
    DisputeResolved,
    ReviewRevised,
    ReviewSubmitted,
    RiskAlertRaised,
    ScorecardPublished,
)
from qastream_shared.runtime import ServiceSpec, create_app
from qastream_shared.settings import Settings
from qastream_shared.topics import CALIBRATIONS, COACHING, DISPUTES, REVIEWS, SCORECARDS

SPEC = ServiceSpec(
    name="coaching",
    metadata=metadata,
    tables=tables,
    migrations=str(Path(__file__).parent / "migrations"),
    consumes=[REVIEWS, DISPUTES, SCORECARDS, CALIBRATIONS],
    # Opened disputes and calibrations are accepted (they belong on those topics) but need no action.
    accepts={
        REVIEWS: [ReviewSubmitted, ReviewRevised],
        DISPUTES: [DisputeOpened, DisputeResolved],
        SCORECARDS: [ScorecardPublished],
        CALIBRATIONS: [CalibrationOpened, CalibrationClosed],
    },
    # Every task lifecycle event (each a CoachingTaskEvent), measured impact and risk alerts.
    produces={COACHING: [*CoachingTaskEvent.__subclasses__(), CoachingImpactMeasured, RiskAlertRaised]},
    handler=make_handler,
    # Each batch costs about a dozen round trips whatever its size, and a backlog is where size matters (a
    # caught-up consumer's batches are small anyway).
    consumer_batch_size=2000,
    routers=[router, webhooks_router],
    tasks=[deliver_webhooks],
    title="qastream coaching",
    openapi_models=(Rule,),
)


def build(settings: Settings | None = None, *, consume: bool = True) -> FastAPI:
    return create_app(SPEC, settings, consume=consume)
