"""Scoring's HTTP API, one module per resource; `router` serves them all."""

from fastapi import APIRouter

from qastream_scoring.api import agreement, assignments, calibrations, disputes, reviews, scorecards

router = APIRouter()
for module in (scorecards, reviews, assignments, disputes, calibrations, agreement):
    router.include_router(module.router)
