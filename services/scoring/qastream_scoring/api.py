"""Scoring's HTTP API: scorecards (immutable versions), scoring settings, reviews."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import case, func, select

from qastream_scoring import service
from qastream_scoring.tables import reviews
from qastream_scoring.validation import InvalidScorecard
from qastream_shared.auth import Principal, require, scoped
from qastream_shared.events import Role
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.scorecard import SLUG, Scorecard, ScoringSettings

router = APIRouter(prefix="/v1")
Reader = Annotated[Principal, require()]
Lead = Annotated[Principal, require(Role.admin, Role.qa_lead)]
ScorecardId = Annotated[str, Path(pattern=SLUG)]


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    settings: ScoringSettings
    active_scorecard_id: str | None = None


def runtime(request: Request) -> ServiceRuntime:
    rt: ServiceRuntime = request.app.state.runtime
    return rt


def _invalid(exc: InvalidScorecard) -> HTTPException:
    errors = [{"field": p.path, "message": p.message} for p in exc.problems]
    return HTTPException(
        422,
        {
            "title": "Unprocessable Content",
            "detail": "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]),
            "errors": errors,
        },
    )


@router.get("/scorecards", response_model=list[Scorecard])
async def list_scorecards(request: Request, principal: Reader) -> Any:
    async with runtime(request).unit_of_work() as uow:
        await service.config(uow, principal.tenant_id)
        return await service.list_latest(uow, principal.tenant_id)


@router.get("/scorecards/{scorecard_id}", response_model=Scorecard)
async def get_scorecard(request: Request, scorecard_id: ScorecardId, principal: Reader) -> Any:
    async with runtime(request).unit_of_work() as uow:
        await service.config(uow, principal.tenant_id)
        card = await service.latest(uow, principal.tenant_id, scorecard_id)
    if card is None:
        raise HTTPException(404, f"no scorecard {scorecard_id!r} in this tenant")
    return card


@router.get("/scorecards/{scorecard_id}/versions/{version}", response_model=Scorecard)
async def get_scorecard_version(
    request: Request, scorecard_id: ScorecardId, version: Annotated[int, Path(ge=1)], principal: Reader
) -> Any:
    async with runtime(request).unit_of_work() as uow:
        card = await service.version(uow, principal.tenant_id, scorecard_id, version)
    if card is None:
        raise HTTPException(404, f"no version {version} of scorecard {scorecard_id!r} in this tenant")
    return card


@router.put("/scorecards/{scorecard_id}", response_model=Scorecard)
async def publish_scorecard(
    request: Request, scorecard_id: ScorecardId, draft: Scorecard, principal: Lead
) -> Any:
    """Publishes the draft as the next immutable version (version 1 for a new scorecard).

    The draft's `version` and `published_at` are ignored; re-publishing identical content is a no-op.
    """
    if draft.scorecard_id != scorecard_id:
        raise HTTPException(
            422,
            {
                "title": "Unprocessable Content",
                "detail": f"scorecard_id: body says {draft.scorecard_id!r}, path says {scorecard_id!r}",
                "errors": [{"field": "scorecard_id", "message": "must match the path"}],
            },
        )
    try:
        async with runtime(request).unit_of_work() as uow:
            return await service.publish(uow, principal.tenant_id, draft)
    except InvalidScorecard as exc:
        raise _invalid(exc) from exc


@router.get("/scoring-settings", response_model=SettingsIn)
async def get_settings(request: Request, principal: Reader) -> Any:
    async with runtime(request).unit_of_work() as uow:
        settings, card = await service.config(uow, principal.tenant_id)
    return SettingsIn(settings=settings, active_scorecard_id=card.scorecard_id)


@router.put("/scoring-settings", response_model=SettingsIn)
async def put_settings(request: Request, body: SettingsIn, principal: Lead) -> Any:
    async with runtime(request).unit_of_work() as uow:
        if body.active_scorecard_id is not None and (
            await service.latest(uow, principal.tenant_id, body.active_scorecard_id) is None
        ):
            raise HTTPException(
                422,
                {
                    "title": "Unprocessable Content",
                    "detail": f"active_scorecard_id: no scorecard {body.active_scorecard_id!r} in this tenant",
                    "errors": [{"field": "active_scorecard_id", "message": "unknown scorecard"}],
                },
            )
        await service.set_settings(uow, principal.tenant_id, body.settings, body.active_scorecard_id)
        settings, card = await service.config(uow, principal.tenant_id)
    return SettingsIn(settings=settings, active_scorecard_id=card.scorecard_id)


def _visible(q: Any, principal: Principal) -> Any:
    q = q.where(scoped(reviews, principal))
    # Agents see only their own reviews; team leads their team's.
    if principal.role is Role.agent:
        q = q.where(reviews.c.agent_id == principal.agent_id)
    elif principal.role is Role.team_lead:
        q = q.where(reviews.c.team == principal.team)
    return q


@router.get("/reviews")
async def list_reviews(
    request: Request,
    principal: Reader,
    conversation_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    q = _visible(select(reviews), principal).order_by(reviews.c.submitted_at.desc()).limit(limit)
    if conversation_id is not None:
        q = q.where(reviews.c.conversation_id == conversation_id)
    async with runtime(request).unit_of_work() as uow:
        return [service.review_view(r) for r in (await uow.session.execute(q)).mappings()]


@router.get("/reviews/summary")
async def review_summary(
    request: Request,
    principal: Reader,
    by: Annotated[str, Query(pattern="^(tenant|team|agent|channel)$")] = "tenant",
    kind: Annotated[str, Query(pattern="^(auto|manual)$")] = "auto",
) -> list[dict[str, Any]]:
    """IQS (mean review score), pass rate and auto-fail rate per group, over the reviews this key may see."""
    column = {
        "tenant": reviews.c.tenant_id,
        "team": reviews.c.team,
        "agent": reviews.c.agent_id,
        "channel": reviews.c.channel,
    }[by]
    q = (
        _visible(
            select(
                column.label("group"),
                func.count().label("reviews"),
                func.avg(reviews.c.score).label("iqs"),
                func.avg(case((reviews.c.passed, 1.0), else_=0.0)).label("pass_rate"),
                func.avg(case((reviews.c.auto_failed, 1.0), else_=0.0)).label("auto_fail_rate"),
            ),
            principal,
        )
        .where(reviews.c.kind == kind, reviews.c.score.is_not(None))
        .group_by(column)
        .order_by(column)
    )
    async with runtime(request).unit_of_work() as uow:
        return [
            {
                "group": r.group,
                "reviews": r.reviews,
                "iqs": round(r.iqs, 4),
                "pass_rate": round(r.pass_rate, 4),
                "auto_fail_rate": round(r.auto_fail_rate, 4),
            }
            for r in await uow.session.execute(q)
        ]


@router.get("/reviews/{review_id}")
async def get_review(
    request: Request, review_id: Annotated[str, Path(max_length=64)], principal: Reader
) -> Any:
    async with runtime(request).unit_of_work() as uow:
        row = (
            (
                await uow.session.execute(
                    _visible(select(reviews), principal).where(reviews.c.review_id == review_id)
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise HTTPException(404, f"no review {review_id!r} in this tenant")
    return service.review_view(row)
