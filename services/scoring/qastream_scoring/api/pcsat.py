"""The pCSAT model this service applies: its version, coefficients and measured validity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from qastream_scoring.api.common import Reader
from qastream_scoring.pcsat import current

router = APIRouter(prefix="/v1", tags=["pcsat"])


@router.get("/pcsat/model")
async def pcsat_model(principal: Reader) -> dict[str, Any]:
    """The model document (bench.pcsat_fit): coefficients, calibration and, per half of the labelled data it
    was fitted and checked on, AUC beside the review score's (each with its 95% bootstrap interval, and their
    paired difference with its own), Brier score and reliability bins with their n, so a reader can judge how
    far to trust a prediction. The same for every tenant: it is fitted on public data, not on theirs."""
    return current().document
