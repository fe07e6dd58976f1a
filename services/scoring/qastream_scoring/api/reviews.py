"""Reviews (AutoQA and manual, each at its current revision), their summary and their history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from qastream_scoring.api.common import Id, Reader, not_found, sees
from qastream_scoring.stores import assignment_intake as intake
from qastream_scoring.stores import disputes as dispute_store
from qastream_scoring.stores import reviews as review_store
from qastream_scoring.workflow import blind
from qastream_shared.api_contract import INT32_MAX
from qastream_shared.auth import Principal
from qastream_shared.paging import CursorParam, LimitParam, Page
from qastream_shared.request_work import work
from qastream_shared.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1", tags=["reviews"])


async def blinder(uow: UnitOfWork, principal: Principal) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What a view goes through before this key sees it: the agent hidden from reviewers in blind mode."""
    if blind.applies(await intake.pool(uow, principal.tenant_id), principal.role):
        return blind.hide_agent
    return lambda v: v


@router.get("/reviews", response_model=Page)
async def list_reviews(
    request: Request,
    principal: Reader,
    conversation_id: Annotated[str | None, Query(max_length=200)] = None,
    agent_id: Annotated[str | None, Query(max_length=200)] = None,
    cursor: CursorParam = None,
    limit: LimitParam = 100,
) -> Page:
    """Newest first. Agents see their own reviews, team leads their team's, reviewers the ones they wrote."""
    async with work(request) as uow:
        items, nxt = await review_store.page(uow, principal, conversation_id, agent_id, cursor, limit)
        show = await blinder(uow, principal)
    return Page(items=[show(i) for i in items], next_cursor=nxt)


@router.get("/reviews/summary", response_model=Page)
async def review_summary(
    request: Request,
    principal: Reader,
    by: Annotated[str, Query(pattern="^(tenant|team|agent|channel)$")] = "tenant",
    kind: Annotated[str, Query(pattern="^(auto|manual)$")] = "auto",
    scorecard_version: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
    cursor: CursorParam = None,
    limit: LimitParam = 100,
) -> Page:
    """IQS (mean review score), pass rate and auto-fail rate per group and scorecard version, over the
    reviews this key may see: a conversation re-scored under a new version is counted once per version."""
    async with work(request) as uow:
        items, nxt = await review_store.summary(uow, principal, by, kind, scorecard_version, cursor, limit)
    return Page(items=items, next_cursor=nxt)


async def _visible_review(uow: UnitOfWork, principal: Principal, review_id: str) -> dict[str, Any]:
    row = await review_store.get(uow, principal.tenant_id, review_id)
    if row is None or not sees(principal, row):
        not_found(f"review {review_id!r}")
    return row


@router.get("/reviews/{review_id}")
async def get_review(request: Request, review_id: Id, principal: Reader) -> Any:
    async with work(request) as uow:
        row = await _visible_review(uow, principal, review_id)
        show = await blinder(uow, principal)
    return show(review_store.view(row))


@router.get("/reviews/{review_id}/history")
async def review_history(request: Request, review_id: Id, principal: Reader) -> Any:
    """Every revision of the review (the current one last) and every dispute about it."""
    async with work(request) as uow:
        row = await _visible_review(uow, principal, review_id)
        versions = await review_store.versions(uow, principal.tenant_id, review_id)
        found = await dispute_store.of_review(uow, principal.tenant_id, review_id)
        show = await blinder(uow, principal)
    if not versions:  # never revised nor submitted by hand: its one version is the current row
        versions = [{"revision": 1, "review": review_store.view(row), "reason": None, "dispute_id": None}]
    return {
        "review": show(review_store.view(row)),
        "versions": [{**v, "review": show(v["review"])} for v in versions],
        "disputes": [show(d) for d in found],
    }
