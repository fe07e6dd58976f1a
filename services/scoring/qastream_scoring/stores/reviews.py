"""Manual reviews and review revisions: `reviews` holds each review's current revision, `review_versions`
every revision (the first included), each as the whole review that was published."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import TypeAdapter
from sqlalchemy import case, func, literal, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from qastream_scoring.engine import score_review
from qastream_scoring.stores import assignments as assignment_store
from qastream_scoring.tables import assignments, review_versions, reviews, scoring_settings
from qastream_shared.auth import Principal, visible
from qastream_shared.events import (
    Envelope,
    Rating,
    ReviewComment,
    ReviewKind,
    ReviewRevised,
    ReviewSubmitted,
    conversation_key,
    deterministic_id,
)
from qastream_shared.paging import page_of, paged
from qastream_shared.scorecard import Scorecard, ScoringSettings
from qastream_shared.topics import REVIEWS
from qastream_shared.unit_of_work import UnitOfWork

SOURCE = "scoring"
_RATINGS = TypeAdapter(list[Rating])
_COMMENTS = TypeAdapter(list[ReviewComment])


def manual_review_id(tenant_id: str, assignment_id: str) -> str:
    """One review per assignment, ever: a retried or double-clicked submit finds the same one."""
    return deterministic_id("review", tenant_id, ReviewKind.manual.value, assignment_id)


async def get(
    uow: UnitOfWork, tenant_id: str, review_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    q = select(reviews).where(reviews.c.tenant_id == tenant_id, reviews.c.review_id == review_id)
    row = (await uow.session.execute(q.with_for_update() if lock else q)).mappings().first()
    return dict(row) if row else None


async def assignment_to_submit(
    uow: UnitOfWork, tenant_id: str, assignment_id: str
) -> tuple[dict[str, Any] | None, ScoringSettings]:
    """The assignment, locked, and the tenant's scoring settings (the defaults until it sets its own), in
    one statement."""
    settings = (
        select(scoring_settings.c.settings)
        .where(scoring_settings.c.tenant_id == tenant_id)
        .scalar_subquery()
        .label("scoring_settings")
    )
    found = (
        (
            await uow.session.execute(
                select(assignments, settings)
                .where(assignments.c.tenant_id == tenant_id, assignments.c.assignment_id == assignment_id)
                .with_for_update(of=assignments)
            )
        )
        .mappings()
        .first()
    )
    if found is None:
        return None, ScoringSettings()
    row = {c.name: found[c.name] for c in assignments.c}
    stored = found["scoring_settings"]
    return row, ScoringSettings.model_validate(stored) if stored is not None else ScoringSettings()


async def by_idempotency_key(uow: UnitOfWork, tenant_id: str, key: str) -> dict[str, Any] | None:
    row = (
        (
            await uow.session.execute(
                select(reviews).where(reviews.c.tenant_id == tenant_id, reviews.c.idempotency_key == key)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def _json(obj: Any) -> Any:
    return orjson.loads(orjson.dumps(obj))


async def submit(
    uow: UnitOfWork,
    tenant_id: str,
    assignment: Mapping[str, Any],
    card: Scorecard,
    settings: ScoringSettings,
    ratings: Sequence[Rating],
    comments: Sequence[ReviewComment],
    time_spent_s: float | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    """Stores the manual review of an open assignment (locked by the caller), completes the assignment and
    publishes ReviewSubmitted (kind manual) and AssignmentChanged (completed)."""
    now = datetime.now(UTC)
    rid = manual_review_id(tenant_id, assignment["assignment_id"])
    result = score_review(card, ratings, settings)
    if time_spent_s is None and assignment["opened_at"] is not None:
        time_spent_s = max(0.0, (now - assignment["opened_at"]).total_seconds())
    ev = ReviewSubmitted(
        review_id=rid,
        conversation_id=assignment["conversation_id"],
        kind=ReviewKind.manual,
        scorecard_id=card.scorecard_id,
        scorecard_version=card.version,
        reviewer_id=assignment["reviewer_id"],
        agent_id=assignment["agent_id"],
        team=assignment["team"],
        channel=assignment["channel"],
        ratings=list(ratings),
        score=result.score,
        auto_failed=result.auto_failed,
        passed=result.passed,
        inclusion_probability=assignment["inclusion_probability"],
        time_spent_s=time_spent_s,
        assignment_id=assignment["assignment_id"],
        comments=list(comments),
        submitted_at=now,
    )
    row = {
        "review_id": rid,
        "tenant_id": tenant_id,
        "conversation_id": ev.conversation_id,
        "kind": ReviewKind.manual.value,
        "scorecard_id": card.scorecard_id,
        "scorecard_version": card.version,
        "scorer_versions": {},
        "ratings": _json(_RATINGS.dump_python(ev.ratings, mode="json", exclude_none=True)),
        "score": ev.score,
        "auto_failed": ev.auto_failed,
        "passed": ev.passed,
        "agent_id": ev.agent_id,
        "team": ev.team,
        "channel": ev.channel,
        "reviewer_id": ev.reviewer_id,
        "inclusion_probability": ev.inclusion_probability,
        "submitted_at": now,
        "revision": 1,
        "assignment_id": ev.assignment_id,
        "time_spent_s": time_spent_s,
        "comments": _COMMENTS.dump_python(ev.comments, mode="json"),
        "idempotency_key": idempotency_key,
    }
    first = review_versions.insert().values(
        tenant_id=tenant_id, review_id=rid, revision=1, body=ev.model_dump(mode="json"), created_at=now
    )
    done, logged = assignment_store.completion(uow, tenant_id, assignment, rid, now)
    # One round trip for the four writes: data-modifying CTEs, none of which reads another's rows.
    writes = [pg_insert(reviews).values(**row), first, done, logged]
    await uow.session.execute(select(literal(1)).add_cte(*(w.cte(f"w{i}") for i, w in enumerate(writes))))
    key = conversation_key(tenant_id, ev.conversation_id)
    uow.publish(
        REVIEWS,
        Envelope(data=ev, source=SOURCE, tenant=tenant_id, key=key, subject=ev.conversation_id, id=rid),
    )
    return row


def _as_submitted(row: Mapping[str, Any]) -> dict[str, Any]:
    """Revision 1 of a review stored before revisions were kept (an AutoQA review), as published."""
    ev = ReviewSubmitted(
        review_id=row["review_id"],
        conversation_id=row["conversation_id"],
        kind=ReviewKind(row["kind"]),
        scorecard_id=row["scorecard_id"],
        scorecard_version=row["scorecard_version"],
        scorer_versions=row["scorer_versions"] or {},
        reviewer_id=row["reviewer_id"],
        agent_id=row["agent_id"],
        team=row["team"],
        channel=row["channel"],
        ratings=_RATINGS.validate_python(row["ratings"]),
        score=row["score"],
        auto_failed=row["auto_failed"],
        passed=row["passed"],
        inclusion_probability=row["inclusion_probability"],
        pcsat=row["pcsat"],
        submitted_at=row["submitted_at"],
    )
    return ev.model_dump(mode="json")


async def revise(
    uow: UnitOfWork,
    tenant_id: str,
    row: Mapping[str, Any],
    card: Scorecard,
    settings: ScoringSettings,
    ratings: Sequence[Rating],
    *,
    reason: str,
    dispute_id: str,
    cause: Envelope | None = None,
) -> int:
    """Stores the next revision of a review (locked by the caller) and publishes ReviewRevised; the earlier
    revisions stay in review_versions. Returns the new revision number."""
    now = datetime.now(UTC)
    revision = int(row["revision"]) + 1
    await uow.session.execute(
        pg_insert(review_versions)
        .values(
            tenant_id=tenant_id,
            review_id=row["review_id"],
            revision=1,
            body=_as_submitted(row),
            created_at=row["submitted_at"],
        )
        .on_conflict_do_nothing()
    )
    result = score_review(card, ratings, settings)
    comments = _COMMENTS.validate_python(row["comments"] or [])
    ev = ReviewRevised(
        review_id=row["review_id"],
        revision=revision,
        conversation_id=row["conversation_id"],
        kind=ReviewKind(row["kind"]),
        scorecard_id=row["scorecard_id"],
        scorecard_version=row["scorecard_version"],
        reviewer_id=row["reviewer_id"],
        agent_id=row["agent_id"],
        team=row["team"],
        channel=row["channel"],
        ratings=list(ratings),
        score=result.score,
        auto_failed=result.auto_failed,
        passed=result.passed,
        comments=comments,
        time_spent_s=row["time_spent_s"],
        assignment_id=row["assignment_id"],
        reason=reason,
        dispute_id=dispute_id,
        revised_at=now,
    )
    await uow.session.execute(
        update(reviews)
        .where(reviews.c.review_id == row["review_id"])
        .values(
            ratings=_json(_RATINGS.dump_python(ev.ratings, mode="json", exclude_none=True)),
            score=ev.score,
            auto_failed=ev.auto_failed,
            passed=ev.passed,
            revision=revision,
        )
    )
    await uow.session.execute(
        review_versions.insert().values(
            tenant_id=tenant_id,
            review_id=row["review_id"],
            revision=revision,
            body=ev.model_dump(mode="json"),
            reason=reason,
            dispute_id=dispute_id,
            created_at=now,
        )
    )
    key = conversation_key(tenant_id, ev.conversation_id)
    eid = deterministic_id(row["review_id"], "revision", str(revision))
    env = (
        cause.caused(ev, SOURCE, key=key, id=eid)
        if cause is not None
        else Envelope(data=ev, source=SOURCE, tenant=tenant_id, key=key, subject=ev.conversation_id, id=eid)
    )
    uow.publish(REVIEWS, env)
    return revision


async def versions(uow: UnitOfWork, tenant_id: str, review_id: str) -> list[dict[str, Any]]:
    rows = await uow.session.execute(
        select(review_versions)
        .where(review_versions.c.tenant_id == tenant_id, review_versions.c.review_id == review_id)
        .order_by(review_versions.c.revision)
    )
    return [
        {
            "revision": r["revision"],
            "review": r["body"],
            "reason": r["reason"],
            "dispute_id": r["dispute_id"],
            "created_at": r["created_at"].isoformat(),
        }
        for r in rows.mappings()
    ]


def ratings_of(row: Mapping[str, Any]) -> list[Rating]:
    return _RATINGS.validate_python(row["ratings"])


def view(row: Any) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "idempotency_key"}
    out["submitted_at"] = row["submitted_at"].isoformat()
    return out


async def page(
    uow: UnitOfWork,
    principal: Principal,
    conversation_id: str | None,
    agent_id: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, by (submitted_at, review_id)."""
    q = select(reviews).where(visible(reviews, principal, reviewer="reviewer_id"))
    if conversation_id is not None:
        q = q.where(reviews.c.conversation_id == conversation_id)
    if agent_id is not None:
        q = q.where(reviews.c.agent_id == agent_id)
    q = paged(q, [reviews.c.submitted_at, reviews.c.review_id], cursor, limit, newest_first=True)
    rows = [dict(r) for r in (await uow.session.execute(q)).mappings()]
    items, nxt = page_of(rows, ["submitted_at", "review_id"], limit)
    return [view(r) for r in items], nxt


SUMMARY_GROUPS = ("tenant", "team", "agent", "channel")


async def summary(
    uow: UnitOfWork,
    principal: Principal,
    by: str,
    kind: str,
    scorecard_version: int | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """IQS, pass rate and auto-fail rate per group and scorecard version. A conversation counts once per
    version: re-scored under another version it counts once in each, and when it has several reviews of
    one kind in one version (scored again after a scorer upgrade), its newest stands."""
    conversation = (
        reviews.c.tenant_id,
        reviews.c.conversation_id,
        reviews.c.scorecard_id,
        reviews.c.scorecard_version,
    )
    latest = (
        select(reviews)
        .where(
            visible(reviews, principal, reviewer="reviewer_id"),
            reviews.c.kind == kind,
            reviews.c.score.is_not(None),
        )
        .distinct(*conversation)
        .order_by(*conversation, reviews.c.submitted_at.desc(), reviews.c.review_id)
    )
    if scorecard_version is not None:
        latest = latest.where(reviews.c.scorecard_version == scorecard_version)
    r = latest.subquery("latest")
    column = {"tenant": r.c.tenant_id, "team": r.c.team, "agent": r.c.agent_id, "channel": r.c.channel}[by]
    # A literal, not a bound '', so GROUP BY and ORDER BY are the same expression to PostgreSQL.
    key = func.coalesce(column, literal_column("''"))
    q = select(
        key.label("group"),
        r.c.scorecard_id,
        r.c.scorecard_version,
        func.count().label("reviews"),
        func.avg(r.c.score).label("iqs"),
        func.avg(case((r.c.passed, 1.0), else_=0.0)).label("pass_rate"),
        func.avg(case((r.c.auto_failed, 1.0), else_=0.0)).label("auto_fail_rate"),
    ).group_by(key, r.c.scorecard_id, r.c.scorecard_version)
    order = [key, r.c.scorecard_id, r.c.scorecard_version]
    rows = [dict(r) for r in (await uow.session.execute(paged(q, order, cursor, limit))).mappings()]
    items, nxt = page_of(rows, ["group", "scorecard_id", "scorecard_version"], limit)
    return [
        {
            "group": r["group"] or None,
            "scorecard_id": r["scorecard_id"],
            "scorecard_version": r["scorecard_version"],
            "reviews": r["reviews"],
            "iqs": round(r["iqs"], 4),
            "pass_rate": round(r["pass_rate"], 4),
            "auto_fail_rate": round(r["auto_fail_rate"], 4),
        }
        for r in items
    ], nxt


async def auto_of(
    uow: UnitOfWork, tenant_id: str, conversation_id: str, scorecard_id: str, scorecard_version: int
) -> dict[str, Any] | None:
    """The AutoQA review of a conversation under a scorecard version (the newest if scorers changed)."""
    row = (
        (
            await uow.session.execute(
                select(reviews)
                .where(
                    reviews.c.tenant_id == tenant_id,
                    reviews.c.conversation_id == conversation_id,
                    reviews.c.kind == ReviewKind.auto.value,
                    reviews.c.scorecard_id == scorecard_id,
                    reviews.c.scorecard_version == scorecard_version,
                )
                .order_by(reviews.c.submitted_at.desc())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    return view(row) if row else None
