"""Scorecards (immutable versions) and the tenant's scoring settings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict

from qastream_scoring import service
from qastream_scoring.api.common import Lead, Reader, configured
from qastream_scoring.validation import InvalidScorecard
from qastream_shared.api_contract import VersionPath
from qastream_shared.http import field_errors
from qastream_shared.request_work import work
from qastream_shared.scorecard import SLUG, Scorecard, ScoringSettings

router = APIRouter(prefix="/v1", tags=["scorecards"])
ScorecardId = Annotated[str, Path(pattern=SLUG)]


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    settings: ScoringSettings
    active_scorecard_id: str | None = None


def _invalid(exc: InvalidScorecard) -> HTTPException:
    return field_errors([{"field": p.path, "message": p.message} for p in exc.problems])


@router.get("/scorecards", response_model=list[Scorecard])
async def list_scorecards(request: Request, principal: Reader) -> Any:
    async with configured(request, principal.tenant_id) as (uow, _, _):
        return await service.list_latest(uow, principal.tenant_id)


@router.get("/scorecards/{scorecard_id}", response_model=Scorecard)
async def get_scorecard(request: Request, scorecard_id: ScorecardId, principal: Reader) -> Any:
    async with configured(request, principal.tenant_id) as (uow, _, _):
        card = await service.latest(uow, principal.tenant_id, scorecard_id)
    if card is None:
        raise HTTPException(404, f"no scorecard {scorecard_id!r} in this tenant")
    return card


@router.get("/scorecards/{scorecard_id}/versions/{version}", response_model=Scorecard)
async def get_scorecard_version(
    request: Request, scorecard_id: ScorecardId, version: VersionPath, principal: Reader
) -> Any:
    async with work(request) as uow:
        card = await service.version(uow, principal.tenant_id, scorecard_id, version)
    if card is None:
        raise HTTPException(404, f"no version {version} of scorecard {scorecard_id!r} in this tenant")
    return card


@router.put("/scorecards/{scorecard_id}", response_model=Scorecard)
async def publish_scorecard(
    request: Request, scorecard_id: ScorecardId, draft: Scorecard, principal: Lead
) -> Any:
    """Publishes the draft as the next immutable version (version 1 for a new scorecard).

    The path names the scorecard: the draft's `scorecard_id`, `version` and `published_at` are ignored.
    Re-publishing identical content is a no-op.
    """
    draft = draft.model_copy(update={"scorecard_id": scorecard_id})
    try:
        async with work(request) as uow:
            return await service.publish(uow, principal.tenant_id, draft)
    except InvalidScorecard as exc:
        raise _invalid(exc) from exc


@router.get("/scoring-settings", response_model=SettingsIn)
async def get_settings(request: Request, principal: Reader) -> Any:
    async with configured(request, principal.tenant_id) as (_, settings, card):
        return SettingsIn(settings=settings, active_scorecard_id=card.scorecard_id)


@router.put(
    "/scoring-settings",
    response_model=SettingsIn,
    responses={404: {"description": "active_scorecard_id names no scorecard of this tenant"}},
)
async def put_settings(request: Request, body: SettingsIn, principal: Lead) -> Any:
    async with work(request) as uow:
        if body.active_scorecard_id is not None and (
            await service.latest(uow, principal.tenant_id, body.active_scorecard_id) is None
        ):
            raise HTTPException(  # a reference to a resource the tenant does not have, as GET would say
                404,
                {
                    "title": "Not Found",
                    "detail": f"active_scorecard_id: no scorecard {body.active_scorecard_id!r} in this tenant",
                    "errors": [{"field": "active_scorecard_id", "message": "unknown scorecard"}],
                },
            )
        await service.set_settings(uow, principal.tenant_id, body.settings, body.active_scorecard_id)
        settings, card = await service.config(uow, principal.tenant_id)
    return SettingsIn(settings=settings, active_scorecard_id=card.scorecard_id)
