"""Coaching's SQL for the facts rules judge: stored reviews (their latest revision) and rejected disputes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_coaching.tables import rejections, reviews
from qastream_coaching.triggers import RejectionFact, ReviewFact
from qastream_shared.db import array_insert, array_params

_REVIEW_COLUMNS = (
    "tenant_id", "review_id", "conversation_id", "agent_id", "team", "kind", "revision", "at", "score",
    "passed", "auto_failed", "categories", "evidence",
)  # fmt: skip
# A later revision replaces the row; a redelivered or older one changes nothing.
_UPSERT_REVIEWS = array_insert(
    reviews,
    _REVIEW_COLUMNS,
    suffix=(
        "ON CONFLICT (tenant_id, review_id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in _REVIEW_COLUMNS[2:] if c != "at")
        + ", write_seq = nextval('review_writes')"
        + f" WHERE {reviews.name}.revision < excluded.revision RETURNING review_id, write_seq"
    ),
)
# JSON columns come as text for orjson, several times faster than the driver's json decoding.
_HISTORY = text(
    f"SELECT review_id, conversation_id, agent_id, team, kind, revision, at, score, passed, auto_failed, "
    f"categories::text AS categories, evidence::text AS evidence, write_seq FROM {reviews.name} "
    "WHERE tenant_id = :tenant AND agent_id = ANY(CAST(:agents AS text[])) AND at > :since"
)
_WRITES = text(
    f"SELECT agent_id, count(*), sum(write_seq) FROM {reviews.name} "
    "WHERE tenant_id = :tenant AND agent_id = ANY(CAST(:agents AS text[])) AND at > :since GROUP BY agent_id"
)


async def review_times(
    session: AsyncSession, tenant_id: str, review_ids: Iterable[str]
) -> dict[str, tuple[int, datetime]]:
    """review → (stored revision, event time) for the reviews coaching already holds."""
    ids = list(review_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(reviews.c.review_id, reviews.c.revision, reviews.c.at).where(
            reviews.c.tenant_id == tenant_id, reviews.c.review_id.in_(ids)
        )
    )
    return {rid: (rev, at) for rid, rev, at in rows}


async def upsert_reviews(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Stores review facts; returns the ids whose row changed (new, or a later revision) → its write_seq."""
    if not rows:
        return {}
    params = array_params(_REVIEW_COLUMNS, rows)
    params["categories"] = [orjson.dumps(c).decode() for c in params["categories"]]
    params["evidence"] = [orjson.dumps(e).decode() for e in params["evidence"]]
    result = await session.execute(_UPSERT_REVIEWS, params)
    return dict(result.tuples().all())


class StoredReview(NamedTuple):
    """A stored review as the rules and the tasks' evidence read it."""

    fact: ReviewFact
    quotes: dict[str, list[dict[str, Any]]]  # category → what the scorer or reviewer pointed at
    write_seq: int


def fact_of(row: Any, categories: dict[str, float] | None = None) -> ReviewFact:
    return ReviewFact(
        review_id=row["review_id"],
        conversation_id=row["conversation_id"],
        agent_id=row["agent_id"],
        team=row["team"],
        kind=row["kind"],
        at=row["at"].timestamp(),
        score=row["score"],
        passed=row["passed"],
        auto_failed=row["auto_failed"],
        categories=row["categories"] if categories is None else categories,
        revision=row["revision"],
    )


async def histories(
    session: AsyncSession, tenant_id: str, agents: Iterable[str], since: datetime
) -> dict[str, list[StoredReview]]:
    """The agents' stored reviews after `since` (event time)."""
    rows = (
        await session.execute(_HISTORY, {"tenant": tenant_id, "agents": sorted(set(agents)), "since": since})
    ).mappings()
    found: dict[str, list[StoredReview]] = {}
    for row in rows:
        fact = fact_of(row, orjson.loads(row["categories"]))
        found.setdefault(row["agent_id"], []).append(
            StoredReview(fact, orjson.loads(row["evidence"]), row["write_seq"])
        )
    return found


async def writes(
    session: AsyncSession, tenant_id: str, agents: Iterable[str], since: datetime
) -> dict[str, tuple[int, int]]:
    """agent → (number of stored reviews after `since`, the sum of their write_seq); agents with none left out."""
    rows = await session.execute(
        _WRITES, {"tenant": tenant_id, "agents": sorted(set(agents)), "since": since}
    )
    return {agent: (int(n), int(total)) for agent, n, total in rows}


async def reviews_of(session: AsyncSession, tenant_id: str, agent_id: str) -> list[ReviewFact]:
    rows = await session.execute(
        select(reviews)
        .where(reviews.c.tenant_id == tenant_id, reviews.c.agent_id == agent_id)
        .order_by(reviews.c.at)
    )
    return [fact_of(r) for r in rows.mappings()]


async def review_kinds(session: AsyncSession, tenant_id: str, review_ids: Iterable[str]) -> dict[str, str]:
    ids = list(set(review_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(reviews.c.review_id, reviews.c.kind).where(
            reviews.c.tenant_id == tenant_id, reviews.c.review_id.in_(ids)
        )
    )
    return dict(rows.tuples().all())


def _detail(row: Any) -> dict[str, Any]:
    return {"conversation_id": row["conversation_id"], "kind": row["kind"], "evidence": row["evidence"]}


async def review_details(
    session: AsyncSession, tenant_id: str, review_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    ids = list(set(review_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(reviews.c.review_id, reviews.c.conversation_id, reviews.c.kind, reviews.c.evidence).where(
            reviews.c.tenant_id == tenant_id, reviews.c.review_id.in_(ids)
        )
    )
    return {r["review_id"]: _detail(r) for r in rows.mappings()}


async def add_rejections(session: AsyncSession, facts: Sequence[RejectionFact], tenant_id: str) -> set[str]:
    if not facts:
        return set()
    result = await session.execute(
        pg_insert(rejections)
        .values(
            [
                {
                    "tenant_id": tenant_id,
                    "dispute_id": f.dispute_id,
                    "review_id": f.review_id,
                    "agent_id": f.agent_id,
                    "team": f.team,
                    "category_id": f.category_id,
                    "at": datetime.fromtimestamp(f.at, UTC),
                }
                for f in facts
            ]
        )
        .on_conflict_do_nothing()
        .returning(rejections.c.dispute_id)
    )
    return set(result.scalars().all())


async def rejections_of(
    session: AsyncSession, tenant_id: str, agents: Iterable[str], since: datetime
) -> list[RejectionFact]:
    rows = await session.execute(
        select(rejections).where(
            rejections.c.tenant_id == tenant_id,
            rejections.c.agent_id.in_(sorted(set(agents))),
            rejections.c.at > since,
        )
    )
    return [
        RejectionFact(
            r["dispute_id"], r["review_id"], r["agent_id"], r["team"], r["category_id"], r["at"].timestamp()
        )
        for r in rows.mappings()
    ]
