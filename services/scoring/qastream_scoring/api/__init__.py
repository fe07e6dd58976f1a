"""Scoring's HTTP API, one module per resource; `router` serves them all."""

from fastapi import APIRouter

from qastream_scoring.api import agreement, assignments, calibrations, disputes, pcsat, reviews, scorecards

router = APIRouter()
for module in (scorecards, reviews, assignments, disputes, calibrations, agreement, pcsat):
    router.include_router(module.router)
