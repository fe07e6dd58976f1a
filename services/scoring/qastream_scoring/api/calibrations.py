"""Calibration sessions: a QA lead pins conversations and participants; participants rate blind and see
the others' ratings of a conversation once they have rated it; closing computes α and alignment."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from qastream_events.json_input import JsonInput
from qastream_scoring import service
from qastream_scoring.api.common import (
    Id,
    Lead,
    Reader,
    Reviewing,
    actor,
    invalid_rating,
    not_found,
    user_id,
)
from qastream_scoring.engine import InvalidRating
from qastream_scoring.stores import assignments as assignment_store
from qastream_scoring.stores import calibrations as store
from qastream_scoring.workflow.agreement import calibration_results
from qastream_scoring.workflow.ratings import RatingIn, check_comments, check_ratings
from qastream_shared.api_contract import INT32_MAX
from qastream_shared.auth import TENANT_WIDE, Principal
from qastream_shared.events import ReviewComment
from qastream_shared.http import unprocessable
from qastream_shared.paging import CursorParam, LimitParam, Page
from qastream_shared.request_work import work

router = APIRouter(prefix="/v1", tags=["calibrations"])
Name = Annotated[str, Field(min_length=1, max_length=200)]
UNIQUE: dict[str, Any] = {"uniqueItems": True}  # checked by _unique, which names the repeated item


class SessionIn(JsonInput):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    scorecard_id: str | None = Field(default=None, max_length=64, description="default: the active scorecard")
    scorecard_version: int | None = Field(
        default=None, ge=1, le=INT32_MAX, description="default: its latest version"
    )
    conversation_ids: list[Name] = Field(min_length=1, max_length=200, json_schema_extra=UNIQUE)
    participants: list[Name] = Field(min_length=2, max_length=100, json_schema_extra=UNIQUE)
    benchmark_reviewer_id: str | None = Field(
        default=None, max_length=200, description="one of the participants"
    )
    deadline: datetime


class CalibrationReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation_id: str = Field(max_length=200)
    ratings: list[RatingIn] = Field(max_length=200)
    comments: list[ReviewComment] = Field(default_factory=list, max_length=200)


def _unique(field: str, values: list[str]) -> None:
    for i, v in enumerate(values):
        if v in values[:i]:
            raise unprocessable(f"{field}[{i}]", f"{v!r} is listed twice")


@router.post("/calibrations", status_code=201)
async def open_session(request: Request, body: SessionIn, principal: Lead) -> Any:
    tenant = principal.tenant_id
    _unique("conversation_ids", body.conversation_ids)
    _unique("participants", body.participants)
    if body.benchmark_reviewer_id is not None and body.benchmark_reviewer_id not in body.participants:
        raise unprocessable("benchmark_reviewer_id", "the benchmark reviewer must be one of the participants")
    if body.deadline.tzinfo is None:
        raise unprocessable("deadline", "give a time zone (e.g. 2026-01-05T17:00:00Z)")
    if body.deadline <= datetime.now(UTC):
        raise unprocessable("deadline", "is in the past")
    async with work(request) as uow:
        _, active = await service.config(uow, tenant)
        scorecard_id = body.scorecard_id or active.scorecard_id
        card = (
            await service.version(uow, tenant, scorecard_id, body.scorecard_version)
            if body.scorecard_version is not None
            else await service.latest(uow, tenant, scorecard_id)
        )
        if card is None:
            raise unprocessable("scorecard_version", f"no such version of scorecard {scorecard_id!r}")
        unknown = await store.unknown_conversations(uow, tenant, body.conversation_ids)
        if unknown:
            at = body.conversation_ids.index(unknown[0])
            raise unprocessable(f"conversation_ids[{at}]", f"no conversation {unknown[0]!r} in this tenant")
        row = await store.open_session(
            uow,
            tenant,
            card,
            body.conversation_ids,
            body.participants,
            body.benchmark_reviewer_id,
            body.deadline,
            actor(principal),
            body.name,
        )
    return store.view(row)


@router.get("/calibrations", response_model=Page)
async def list_sessions(
    request: Request, principal: Reader, cursor: CursorParam = None, limit: LimitParam = 100
) -> Page:
    async with work(request) as uow:
        items, nxt = await store.page(uow, principal, cursor, limit)
    return Page(items=items, next_cursor=nxt)


def _participant(principal: Principal, session: dict[str, Any]) -> bool:
    return principal.agent_id is not None and principal.agent_id in session["participants"]


@router.get("/calibrations/{session_id}")
async def get_session(request: Request, session_id: Id, principal: Reader) -> Any:
    """The session with its transcripts. Leads see every rating; a participant sees their own, and the
    others' on a conversation once they have rated it themselves (everything once the session is closed)."""
    tenant = principal.tenant_id
    async with work(request) as uow:
        session = await store.get(uow, tenant, session_id)
        if session is None or not (principal.role in TENANT_WIDE or _participant(principal, session)):
            not_found(f"calibration session {session_id!r}")
        ratings = await store.ratings_of(uow, session_id)
        transcripts = {
            c: await assignment_store.transcript(uow, tenant, c) for c in session["conversation_ids"]
        }
    if principal.role not in TENANT_WIDE and session["closed_at"] is None:
        mine = {r["conversation_id"] for r in ratings if r["reviewer_id"] == principal.agent_id}
        ratings = [r for r in ratings if r["conversation_id"] in mine]
    return {
        **store.view(session),
        "conversations": [
            {
                "conversation_id": c,
                "conversation": transcripts[c],
                "ratings": [r for r in ratings if r["conversation_id"] == c],
            }
            for c in session["conversation_ids"]
        ],
    }


@router.post("/calibrations/{session_id}/reviews", status_code=201)
async def rate(request: Request, session_id: Id, body: CalibrationReviewIn, principal: Reviewing) -> Any:
    tenant = principal.tenant_id
    me = user_id(principal)
    async with work(request) as uow:
        session = await store.get(uow, tenant, session_id, lock=True)
        if session is None or not (principal.role in TENANT_WIDE or _participant(principal, session)):
            not_found(f"calibration session {session_id!r}")
        if not _participant(principal, session):
            raise HTTPException(403, f"{me!r} is not a participant of this session")
        if session["closed_at"] is not None:
            raise HTTPException(409, "the session is closed")
        if datetime.now(UTC) > session["deadline"]:
            raise HTTPException(
                409, f"deadline: the session's deadline ({session['deadline'].isoformat()}) has passed"
            )
        if body.conversation_id not in session["conversation_ids"]:
            raise unprocessable("conversation_id", "not one of the session's conversations")
        card = await service.version(uow, tenant, session["scorecard_id"], session["scorecard_version"])
        assert card is not None  # published versions are never deleted
        transcript = await assignment_store.transcript(uow, tenant, body.conversation_id)
        try:
            ratings = check_ratings(card, body.ratings, complete=True)
            comments = check_comments(body.comments, len(transcript["turns"]) if transcript else 0)
        except InvalidRating as exc:
            raise invalid_rating(exc) from None
        settings = await service.settings_of(uow, tenant)
        stored = await store.submit(
            uow, tenant, session, card, settings, me, body.conversation_id, ratings, comments
        )
    if stored is None:
        raise HTTPException(409, f"{me!r} already rated {body.conversation_id!r} in this session")
    return stored


@router.post("/calibrations/{session_id}/close")
async def close_session(request: Request, session_id: Id, principal: Lead) -> Any:
    """Krippendorff's α per category and overall, and each participant's alignment to the benchmark."""
    tenant = principal.tenant_id
    async with work(request) as uow:
        session = await store.get(uow, tenant, session_id, lock=True)
        if session is None:
            not_found(f"calibration session {session_id!r}")
        if session["closed_at"] is not None:
            raise HTTPException(409, "the session is already closed")
        card = await service.version(uow, tenant, session["scorecard_id"], session["scorecard_version"])
        assert card is not None
        by_rater: dict[str, dict[tuple[str, str], int | None]] = {}
        for r in await store.ratings_of(uow, session_id):
            mine = by_rater.setdefault(r["reviewer_id"], {})
            for rating in r["ratings"]:
                mine[(r["conversation_id"], rating["category_id"])] = rating.get("value")
        overall, per_category, aligned = calibration_results(
            [(c.category_id, c.scale) for c in card.categories()],
            session["conversation_ids"],
            by_rater,
            session["benchmark_reviewer_id"],
        )
        closed = await store.close(uow, tenant, session, overall, per_category, aligned)
    return store.view(closed)
