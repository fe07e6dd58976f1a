"""Calibration sessions and their ratings; CalibrationOpened/Closed on qa.calibrations, each rating a
ReviewSubmitted of kind calibration on qa.reviews (kept out of `reviews`, so never in IQS)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from qastream_scoring.engine import score_review
from qastream_scoring.tables import calibration_reviews, calibration_sessions, conversations
from qastream_shared.auth import TENANT_WIDE, Principal
from qastream_shared.events import (
    CalibrationClosed,
    CalibrationOpened,
    Envelope,
    Rating,
    ReviewComment,
    ReviewKind,
    ReviewSubmitted,
    conversation_key,
    deterministic_id,
)
from qastream_shared.paging import page_of, paged
from qastream_shared.scorecard import Scorecard, ScoringSettings
from qastream_shared.topics import CALIBRATIONS, REVIEWS
from qastream_shared.unit_of_work import UnitOfWork

SOURCE = "scoring"
_RATINGS = TypeAdapter(list[Rating])


def _key(tenant_id: str, session_id: str) -> str:
    return f"{tenant_id}:{session_id}"


def view(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items()}
    for k in ("deadline", "opened_at", "closed_at"):
        out[k] = row[k].isoformat() if row[k] is not None else None
    return out


async def unknown_conversations(uow: UnitOfWork, tenant_id: str, ids: Sequence[str]) -> list[str]:
    found = set(
        (
            await uow.session.execute(
                select(conversations.c.conversation_id).where(
                    conversations.c.tenant_id == tenant_id, conversations.c.conversation_id.in_(ids)
                )
            )
        ).scalars()
    )
    return [c for c in ids if c not in found]


async def open_session(
    uow: UnitOfWork,
    tenant_id: str,
    card: Scorecard,
    conversation_ids: Sequence[str],
    participants: Sequence[str],
    benchmark: str | None,
    deadline: datetime,
    by: str,
    name: str | None = None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    row = {
        "session_id": str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "name": name,
        "scorecard_id": card.scorecard_id,
        "scorecard_version": card.version,
        "conversation_ids": list(conversation_ids),
        "participants": list(participants),
        "benchmark_reviewer_id": benchmark,
        "deadline": deadline,
        "opened_by": by,
        "opened_at": now,
    }
    await uow.session.execute(calibration_sessions.insert().values(**row))
    ev = CalibrationOpened(**{k: v for k, v in row.items() if k not in ("tenant_id", "name")})
    uow.publish(
        CALIBRATIONS,
        Envelope(
            data=ev,
            source=SOURCE,
            tenant=tenant_id,
            key=_key(tenant_id, ev.session_id),
            subject=ev.session_id,
            id=ev.session_id,
        ),
    )
    return {**row, "closed_at": None, "results": None}


async def get(
    uow: UnitOfWork, tenant_id: str, session_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    q = select(calibration_sessions).where(
        calibration_sessions.c.tenant_id == tenant_id, calibration_sessions.c.session_id == session_id
    )
    row = (await uow.session.execute(q.with_for_update() if lock else q)).mappings().first()
    return dict(row) if row else None


async def page(
    uow: UnitOfWork, principal: Principal, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first: leads and admins every session of the tenant, everyone else the ones they are in."""
    q = select(calibration_sessions).where(calibration_sessions.c.tenant_id == principal.tenant_id)
    if principal.role not in TENANT_WIDE:
        q = q.where(calibration_sessions.c.participants.any(principal.agent_id or ""))
    q = paged(
        q,
        [calibration_sessions.c.opened_at, calibration_sessions.c.session_id],
        cursor,
        limit,
        newest_first=True,
    )
    rows = [dict(r) for r in (await uow.session.execute(q)).mappings()]
    items, nxt = page_of(rows, ["opened_at", "session_id"], limit)
    return [view(r) for r in items], nxt


async def ratings_of(uow: UnitOfWork, session_id: str) -> list[dict[str, Any]]:
    rows = await uow.session.execute(
        select(calibration_reviews)
        .where(calibration_reviews.c.session_id == session_id)
        .order_by(calibration_reviews.c.conversation_id, calibration_reviews.c.reviewer_id)
    )
    return [
        {
            "reviewer_id": r["reviewer_id"],
            "conversation_id": r["conversation_id"],
            "review_id": r["review_id"],
            "ratings": r["ratings"],
            "submitted_at": r["submitted_at"].isoformat(),
        }
        for r in rows.mappings()
    ]


async def submit(
    uow: UnitOfWork,
    tenant_id: str,
    session: Mapping[str, Any],
    card: Scorecard,
    settings: ScoringSettings,
    reviewer_id: str,
    conversation_id: str,
    ratings: Sequence[Rating],
    comments: Sequence[ReviewComment],
) -> dict[str, Any] | None:
    """Stores one participant's ratings of one conversation; None when they already rated it."""
    now = datetime.now(UTC)
    rid = deterministic_id(
        "review", tenant_id, ReviewKind.calibration.value, session["session_id"], reviewer_id, conversation_id
    )
    inserted = (
        await uow.session.execute(
            pg_insert(calibration_reviews)
            .values(
                session_id=session["session_id"],
                tenant_id=tenant_id,
                reviewer_id=reviewer_id,
                conversation_id=conversation_id,
                review_id=rid,
                ratings=_RATINGS.dump_python(list(ratings), mode="json", exclude_none=True),
                submitted_at=now,
            )
            .on_conflict_do_nothing()
            .returning(calibration_reviews.c.review_id)
        )
    ).first()
    if inserted is None:
        return None
    result = score_review(card, ratings, settings)
    ev = ReviewSubmitted(
        review_id=rid,
        conversation_id=conversation_id,
        kind=ReviewKind.calibration,
        scorecard_id=card.scorecard_id,
        scorecard_version=card.version,
        reviewer_id=reviewer_id,
        ratings=list(ratings),
        score=result.score,
        auto_failed=result.auto_failed,
        passed=result.passed,
        calibration_session_id=session["session_id"],
        comments=list(comments),
        submitted_at=now,
    )
    uow.publish(
        REVIEWS,
        Envelope(
            data=ev,
            source=SOURCE,
            tenant=tenant_id,
            key=conversation_key(tenant_id, conversation_id),
            subject=conversation_id,
            id=rid,
        ),
    )
    return {
        "review_id": rid,
        "reviewer_id": reviewer_id,
        "conversation_id": conversation_id,
        "score": result.score,
    }


async def close(
    uow: UnitOfWork,
    tenant_id: str,
    session: Mapping[str, Any],
    alpha: float | None,
    alpha_by_category: dict[str, float | None],
    alignment: dict[str, float],
) -> dict[str, Any]:
    now = datetime.now(UTC)
    results = {"alpha": alpha, "alpha_by_category": alpha_by_category, "alignment": alignment}
    await uow.session.execute(
        update(calibration_sessions)
        .where(calibration_sessions.c.session_id == session["session_id"])
        .values(closed_at=now, results=results)
    )
    ev = CalibrationClosed(
        session_id=session["session_id"],
        scorecard_id=session["scorecard_id"],
        scorecard_version=session["scorecard_version"],
        conversation_ids=session["conversation_ids"],
        participants=session["participants"],
        benchmark_reviewer_id=session["benchmark_reviewer_id"],
        alpha=alpha,
        alpha_by_category=alpha_by_category,
        alignment=alignment,
        closed_at=now,
    )
    uow.publish(
        CALIBRATIONS,
        Envelope(
            data=ev,
            source=SOURCE,
            tenant=tenant_id,
            key=_key(tenant_id, ev.session_id),
            subject=ev.session_id,
            id=deterministic_id(ev.session_id, "closed"),
        ),
    )
    return {**session, "closed_at": now, "results": results}
