"""The reviewer pool, reviewer assignments (queue, `next`, open, draft, submit) and their changes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from qastream_scoring import service
from qastream_scoring.api.common import (
    Id,
    Lead,
    Reviewing,
    actor,
    invalid_rating,
    not_found,
    runtime,
    sees,
    user_id,
)
from qastream_scoring.api.reviews import blinder
from qastream_scoring.engine import InvalidRating
from qastream_scoring.stores import assignment_intake as intake
from qastream_scoring.stores import assignments as store
from qastream_scoring.stores import reviews as review_store
from qastream_scoring.workflow import blind
from qastream_scoring.workflow.pool import ReviewerPool, may_review
from qastream_scoring.workflow.ratings import RatingIn, check_comments, check_ratings
from qastream_shared.auth import Principal, require
from qastream_shared.events import AssignmentAction, ReviewComment, Role
from qastream_shared.http import unprocessable
from qastream_shared.paging import CursorParam, LimitParam, Page
from qastream_shared.request_work import work
from qastream_shared.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1", tags=["assignments"])
# Everyone but agents: reviewers see their own queue, team leads their team's, leads the tenant's.
QueueReader = Annotated[
    Principal, require(Role.admin, Role.qa_lead, Role.team_lead, Role.reviewer, Role.platform)
]


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ratings: list[RatingIn] = Field(default_factory=list, max_length=200)
    comments: list[ReviewComment] = Field(default_factory=list, max_length=200)
    time_spent_s: float | None = Field(default=None, ge=0, le=86_400, description="else: since first opened")


class ChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class ReassignIn(ChangeIn):
    reviewer_id: str = Field(min_length=1, max_length=200)


@router.get("/reviewers", response_model=ReviewerPool)
async def get_pool(request: Request, principal: Lead) -> Any:
    async with work(request) as uow:
        return await intake.pool(uow, principal.tenant_id)


@router.put("/reviewers", response_model=ReviewerPool)
async def put_pool(request: Request, body: ReviewerPool, principal: Lead) -> Any:
    """The tenant's reviewers (weight, daily and weekly quota, the team each leads) and review options."""
    async with work(request) as uow:
        await intake.put_pool(uow, principal.tenant_id, body)
    return body


@router.get("/assignments", response_model=Page)
async def list_assignments(
    request: Request,
    principal: QueueReader,
    status: Annotated[str | None, Query(pattern="^(open|completed|removed)$")] = None,
    reviewer_id: Annotated[str | None, Query(max_length=200)] = None,
    cursor: CursorParam = None,
    limit: LimitParam = 100,
) -> Page:
    async with work(request) as uow:
        items, nxt = await store.page(uow, principal, status, reviewer_id, cursor, limit)
        show = await blinder(uow, principal)
    return Page(items=[show(i) for i in items], next_cursor=nxt)


@router.get("/assignments/next", responses={204: {"description": "nothing to review"}})
async def next_assignment(request: Request, principal: Reviewing) -> Any:
    """The caller's oldest open assignment, else one claimed from the unassigned pool; 204 when none.
    Two callers never get the same assignment."""
    reviewer = user_id(principal)
    async with work(request) as reader:
        pool, row = await store.queue_head(reader, principal.tenant_id, reviewer)
    if row is None:  # a write in a safe method: the claim is one transaction
        async with runtime(request).unit_of_work() as uow:
            row = await store.claim(uow, principal.tenant_id, reviewer, pool)
    show = blind.hide_agent if blind.applies(pool, principal.role) else dict
    if row is None:
        return Response(status_code=204)
    return show(store.view(row))


async def _visible(uow: UnitOfWork, principal: Principal, aid: str, *, lock: bool = False) -> dict[str, Any]:
    return _shown(principal, aid, await store.get(uow, principal.tenant_id, aid, lock=lock))


def _shown(principal: Principal, aid: str, row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None or principal.role is Role.agent or not sees(principal, row):
        not_found(f"assignment {aid!r}")
    return row


def _assignee(principal: Principal, row: dict[str, Any]) -> str:
    me = user_id(principal)
    if row["reviewer_id"] != me:
        raise HTTPException(403, f"assignment {row['assignment_id']!r} is not assigned to {me!r}")
    return me


@router.get("/assignments/{assignment_id}")
async def open_assignment(request: Request, assignment_id: Id, principal: QueueReader) -> Any:
    """The assignment with what the reviewer works from: the redacted transcript, the AutoQA ratings with
    their evidence, the scorecard version to rate against, the saved draft and the change log.
    The assignee's first open starts the clock for time spent (one statement that guards itself, so it
    needs no transaction)."""
    tenant = principal.tenant_id
    async with work(request) as uow:
        row = await _visible(uow, principal, assignment_id)
        if row["status"] == store.OPEN and principal.agent_id and row["reviewer_id"] == principal.agent_id:
            await store.mark_opened(uow, row)
        card = await service.version(uow, tenant, row["scorecard_id"], row["scorecard_version"])
        auto = await review_store.auto_of(
            uow, tenant, row["conversation_id"], row["scorecard_id"], row["scorecard_version"]
        )
        conversation = await store.transcript(uow, tenant, row["conversation_id"])
        log = await store.history(uow, tenant, assignment_id)
        pool = await intake.pool(uow, tenant)
    show = blind.hide_agent if blind.applies(pool, principal.role) else dict
    return show(
        {
            **store.view(row),
            "blind": pool.blind,
            "draft": row["draft"],
            "conversation": conversation,
            "scorecard": card.model_dump(mode="json") if card else None,
            "auto_ratings": auto["ratings"] if auto else [],
            "auto_review_id": auto["review_id"] if auto else None,
            "log": [{**e, "occurred_at": e["occurred_at"].isoformat()} for e in log],
        }
    )


async def _checked(
    uow: UnitOfWork, tenant: str, row: dict[str, Any], body: ReviewIn, *, complete: bool
) -> tuple[Any, list[Any], list[ReviewComment]]:
    card = await service.version(uow, tenant, row["scorecard_id"], row["scorecard_version"])
    assert card is not None  # published versions are never deleted
    turns = 0
    if any(c.turn is not None for c in body.comments):  # only comments on a turn need the transcript
        conversation = await store.transcript(uow, tenant, row["conversation_id"])
        turns = len(conversation["turns"]) if conversation else 0
    try:
        ratings = check_ratings(card, body.ratings, complete=complete)
        comments = check_comments(body.comments, turns)
    except InvalidRating as exc:
        raise invalid_rating(exc) from None
    return card, ratings, comments


@router.put("/assignments/{assignment_id}/draft")
async def save_draft(request: Request, assignment_id: Id, body: ReviewIn, principal: Reviewing) -> Any:
    """Saves the assignee's work in progress (checked like a submission, but categories may be missing)."""
    # No transaction (a departure from request_work's rule for writes): the one write re-checks what was
    # read (still open, still theirs) itself.
    async with runtime(request).autocommit() as uow:
        row = await _visible(uow, principal, assignment_id)
        _assignee(principal, row)
        if row["status"] != store.OPEN:
            raise HTTPException(409, f"assignment {assignment_id!r} is {row['status']}, not open")
        await _checked(uow, principal.tenant_id, row, body, complete=False)
        saved_at = await store.save_draft(uow, row, body.model_dump(mode="json"))
    if saved_at is None:
        raise HTTPException(409, f"assignment {assignment_id!r} was completed or reassigned meanwhile")
    return {
        "assignment_id": assignment_id,
        "draft": body.model_dump(mode="json"),
        "saved_at": saved_at.isoformat(),
    }


@router.post("/assignments/{assignment_id}/review", status_code=201)
async def submit_review(
    request: Request,
    response: Response,
    assignment_id: Id,
    body: ReviewIn,
    principal: Reviewing,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """Submits the manual review: every category rated or N/A. A second submit of the same assignment (or
    with the same Idempotency-Key) returns the first review with 200 and stores nothing."""
    tenant = principal.tenant_id
    async with work(request) as uow:
        found, settings = await review_store.assignment_to_submit(uow, tenant, assignment_id)
        row = _shown(principal, assignment_id, found)
        _assignee(principal, row)
        if idempotency_key is not None:
            earlier = await review_store.by_idempotency_key(uow, tenant, idempotency_key)
            if earlier is not None and earlier["assignment_id"] != assignment_id:
                raise unprocessable("Idempotency-Key", "already used for another assignment's review")
        if row["status"] == store.COMPLETED and row["review_id"]:
            done = await review_store.get(uow, tenant, row["review_id"])
            assert done is not None
            response.status_code = 200
            return review_store.view(done)
        if row["status"] != store.OPEN:
            raise HTTPException(409, f"assignment {assignment_id!r} is {row['status']}, not open")
        card, ratings, comments = await _checked(uow, tenant, row, body, complete=True)
        stored = await review_store.submit(
            uow, tenant, row, card, settings, ratings, comments, body.time_spent_s, idempotency_key
        )
    return review_store.view(stored)


async def _change(
    request: Request,
    principal: Principal,
    aid: str,
    action: AssignmentAction,
    reason: str,
    reviewer_id: str | None = None,
) -> Any:
    async with work(request) as uow:
        row = await _visible(uow, principal, aid, lock=True)
        if action is AssignmentAction.skipped and principal.role not in (Role.admin, Role.qa_lead):
            _assignee(principal, row)
        if reviewer_id is not None:
            pool = await intake.pool(uow, principal.tenant_id)
            if not may_review(pool, reviewer_id, row["agent_ids"], row["team"]):
                raise unprocessable(
                    "reviewer_id", f"{reviewer_id!r} handled this conversation or leads its agent's team"
                )
        try:
            changed = await store.change(
                uow,
                principal.tenant_id,
                row,
                action,
                reason=reason,
                by=actor(principal),
                reviewer_id=reviewer_id,
            )
        except store.AssignmentConflict as exc:
            raise HTTPException(409, str(exc)) from None
    return store.view(changed)


@router.post("/assignments/{assignment_id}/reassign")
async def reassign(request: Request, assignment_id: Id, body: ReassignIn, principal: Lead) -> Any:
    return await _change(
        request, principal, assignment_id, AssignmentAction.reassigned, body.reason, body.reviewer_id
    )


@router.post("/assignments/{assignment_id}/skip")
async def skip(request: Request, assignment_id: Id, body: ChangeIn, principal: Reviewing) -> Any:
    """Back to the unassigned pool; the skipping reviewer is never handed it again."""
    return await _change(request, principal, assignment_id, AssignmentAction.skipped, body.reason)


@router.post("/assignments/{assignment_id}/remove")
async def remove(request: Request, assignment_id: Id, body: ChangeIn, principal: Lead) -> Any:
    return await _change(request, principal, assignment_id, AssignmentAction.removed, body.reason)
