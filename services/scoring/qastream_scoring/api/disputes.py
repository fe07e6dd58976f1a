"""Disputes: an agent (or their team lead) disputes a review or one category; the reviewer or a QA lead
accepts, partly accepts (with new ratings) or rejects it. Accepting revises the review."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from qastream_scoring import service
from qastream_scoring.api.common import (
    Id,
    Reader,
    actor,
    invalid_rating,
    not_found,
    sees,
)
from qastream_scoring.api.reviews import blinder
from qastream_scoring.engine import InvalidRating
from qastream_scoring.stores import disputes as dispute_store
from qastream_scoring.stores import reviews as review_store
from qastream_scoring.workflow.disputes import DisputeConflict, check_resolution
from qastream_scoring.workflow.ratings import RatingIn, check_ratings, merge
from qastream_shared.auth import Principal, may_see, require
from qastream_shared.events import DisputeOutcome, Role
from qastream_shared.http import unprocessable
from qastream_shared.paging import CursorParam, LimitParam, Page
from qastream_shared.request_work import work

router = APIRouter(prefix="/v1", tags=["disputes"])
Disputer = Annotated[Principal, require(Role.agent, Role.team_lead, Role.admin)]
Resolver = Annotated[Principal, require(Role.reviewer, Role.qa_lead, Role.admin)]


class DisputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category_id: str | None = Field(default=None, max_length=64, description="null disputes the whole review")
    reason: str = Field(min_length=1, max_length=5000)


class ResolutionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: DisputeOutcome
    comment: str | None = Field(default=None, max_length=5000)
    ratings: list[RatingIn] = Field(default_factory=list, max_length=200)


@router.post("/reviews/{review_id}/disputes", status_code=201)
async def open_dispute(request: Request, review_id: Id, body: DisputeIn, principal: Disputer) -> Any:
    """Agents dispute their own reviews, team leads their team's; one open dispute per review and category."""
    async with work(request) as uow:
        review = await review_store.get(uow, principal.tenant_id, review_id)
        if review is None or not may_see(principal, agent_id=review["agent_id"], team=review["team"]):
            not_found(f"review {review_id!r} of yours")
        if body.category_id is not None:
            card = await service.version(
                uow, principal.tenant_id, review["scorecard_id"], review["scorecard_version"]
            )
            if card is None or body.category_id not in {c.category_id for c in card.categories()}:
                raise unprocessable(
                    "category_id",
                    f"{body.category_id!r} is not on scorecard {review['scorecard_id']!r} "
                    f"version {review['scorecard_version']}",
                )
        row = await dispute_store.open_dispute(
            uow, principal.tenant_id, review, body.category_id, body.reason, actor(principal)
        )
    if row is None:
        what = f"category {body.category_id!r}" if body.category_id else "the whole review"
        raise HTTPException(409, f"a dispute on {what} of review {review_id!r} is already open")
    return dispute_store.view(row)


@router.get("/disputes", response_model=Page)
async def list_disputes(
    request: Request,
    principal: Reader,
    status: Annotated[str | None, Query(pattern="^(open|accepted|partially_accepted|rejected)$")] = None,
    cursor: CursorParam = None,
    limit: LimitParam = 100,
) -> Page:
    async with work(request) as uow:
        items, nxt = await dispute_store.page(uow, principal, status, cursor, limit)
        show = await blinder(uow, principal)
    return Page(items=[show(i) for i in items], next_cursor=nxt)


def _may_see(principal: Principal, row: dict[str, Any]) -> bool:
    return sees(principal, row)


@router.get("/disputes/{dispute_id}")
async def get_dispute(request: Request, dispute_id: Id, principal: Reader) -> Any:
    async with work(request) as uow:
        row = await dispute_store.get(uow, principal.tenant_id, dispute_id)
        show = await blinder(uow, principal)
    if row is None or not _may_see(principal, row):
        not_found(f"dispute {dispute_id!r}")
    return show(dispute_store.view(row))


@router.post("/disputes/{dispute_id}/resolve")
async def resolve_dispute(request: Request, dispute_id: Id, body: ResolutionIn, principal: Resolver) -> Any:
    """The review's reviewer or a QA lead resolves it; accepting stores and publishes a new revision."""
    tenant = principal.tenant_id
    async with work(request) as uow:
        row = await dispute_store.get(uow, tenant, dispute_id, lock=True)
        if row is None or not _may_see(principal, row):
            not_found(f"dispute {dispute_id!r}")
        try:
            check_resolution(
                row["status"],
                body.outcome,
                row["category_id"],
                [r.category_id for r in body.ratings],
                body.comment,
            )
        except DisputeConflict as exc:
            raise HTTPException(409, str(exc)) from None
        except InvalidRating as exc:
            raise invalid_rating(exc) from None
        revision = None
        if body.outcome is not DisputeOutcome.rejected:
            review = await review_store.get(uow, tenant, row["review_id"], lock=True)
            assert review is not None  # reviews are never deleted
            card = await service.version(uow, tenant, review["scorecard_id"], review["scorecard_version"])
            assert card is not None  # published versions are never deleted
            settings = await service.settings_of(uow, tenant)
            try:
                new = check_ratings(card, body.ratings, complete=False)
            except InvalidRating as exc:
                raise invalid_rating(exc) from None
            revision = await review_store.revise(
                uow,
                tenant,
                review,
                card,
                settings,
                merge(review_store.ratings_of(review), new),
                reason=body.comment or f"dispute {body.outcome.value}",
                dispute_id=dispute_id,
            )
        resolved = await dispute_store.resolve(
            uow, tenant, row, body.outcome, by=actor(principal), comment=body.comment, revision=revision
        )
        show = await blinder(uow, principal)
    return show(dispute_store.view(resolved))
