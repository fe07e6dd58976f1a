"""Scoring's HTTP API, one module per resource; `router` serves them all."""

from fastapi import APIRouter

from qastream_scoring.api import assignments, disputes, reviews, scorecards

router = APIRouter()
for module in (scorecards, reviews, assignments, disputes):
    router.include_router(module.router)
