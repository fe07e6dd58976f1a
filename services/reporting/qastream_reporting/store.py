"""Read-side SQL: grouped sums over the rollups and the workflow tables, within the caller's visibility.

A dataset names a table, the sums it offers, the dimensions a query may group by or filter on, and the
default filters that keep one figure from counting a review twice (the view and the kind, see facts.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    Float,
    Table,
    Text,
    cast,
    false,
    func,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_reporting.facts import ROLLUPS
from qastream_reporting.tables import (
    assignments_with_scope,
    calibrations,
    coaching_impacts,
    coaching_tasks,
    disputes,
    freshness,
    is_count,
    reviews,
    risk_alerts,
    scorecards,
    with_deltas,
)
from qastream_shared.auth import Principal, visible
from qastream_shared.paging import paged


@dataclass(frozen=True)
class Dataset:
    table: Table
    measures: Mapping[str, Any]  # name → a function of the table giving an aggregate expression
    dims: tuple[str, ...]
    reviewer: str | None = None  # the column a reviewer key is narrowed by (auth.visible)
    time: str = "day"
    has_view: bool = False
    # Filters applied unless the query filters or groups by that dimension itself.
    defaults: Mapping[str, str] = field(default_factory=dict)


def _sums(name: str) -> dict[str, Any]:
    # SUM of a bigint is numeric (a Decimal in Python): counts come back as bigint, sums as float.
    return {
        m: (lambda t, m=m: cast(func.coalesce(func.sum(t.c[m]), 0), BigInteger if is_count(m) else Float))
        for m in ROLLUPS[name][1]
    }


def _rollup(name: str, **kw: Any) -> Dataset:
    dims = tuple(d for d in ROLLUPS[name][0] if d != "view")
    return Dataset(with_deltas[name], _sums(name), dims, has_view="view" in ROLLUPS[name][0], **kw)


def _count(t: Table, where: ColumnElement[bool] | None = None) -> Any:
    return func.count() if where is None else func.count().filter(where)


DATASETS: dict[str, Dataset] = {
    "quality": _rollup("score_rollup", defaults={"kind": "combined"}),
    "categories": _rollup("category_rollup", defaults={"kind": "combined"}),
    "root_causes": _rollup("root_cause_rollup", defaults={"kind": "combined"}),
    "agreement": _rollup("agreement_rollup"),
    "agreement_pairs": _rollup("agreement_pairs"),
    "customer": _rollup("conversation_rollup"),
    "csat_pairs": _rollup("csat_pairs", defaults={"measure": "qa"}),
    "reviewers": _rollup("reviewer_rollup", reviewer="reviewer_id"),
    "assignments": Dataset(
        assignments_with_scope,
        {
            "assignments": lambda t: _count(t),
            "open": lambda t: _count(t, t.c.action.in_(("created", "reassigned"))),
            "completed": lambda t: _count(t, t.c.action == "completed"),
            "skipped": lambda t: _count(t, t.c.action == "skipped"),
            "removed": lambda t: _count(t, t.c.action == "removed"),
        },
        ("day", "reviewer_id", "team", "agent_id"),
        reviewer="reviewer_id",
    ),
    "disputes": Dataset(
        disputes,
        {
            "opened": lambda t: _count(t),
            "resolved": lambda t: _count(t, t.c.outcome.is_not(None)),
            "accepted": lambda t: _count(t, t.c.outcome == "accepted"),
            "partially_accepted": lambda t: _count(t, t.c.outcome == "partially_accepted"),
            "rejected": lambda t: _count(t, t.c.outcome == "rejected"),
            "resolution_seconds": lambda t: func.avg(func.extract("epoch", t.c.resolved_at - t.c.opened_at)),
        },
        ("day", "team", "agent_id", "category_id", "outcome"),
    ),
    "calibrations": Dataset(
        calibrations,
        {
            "sessions": lambda t: _count(t),
            "closed": lambda t: _count(t, t.c.closed_at.is_not(None)),
            "alpha": lambda t: func.avg(t.c.alpha),
            "alpha_min": lambda t: func.min(t.c.alpha),
            "alpha_max": lambda t: func.max(t.c.alpha),
        },
        ("day", "scorecard_id", "scorecard_version"),
    ),
    "coaching": Dataset(
        coaching_tasks,
        {
            "tasks": lambda t: _count(t),
            **{
                status: (lambda t, s=status: _count(t, t.c.status == s))
                for status in ("open", "acknowledged", "completed", "dismissed")
            },
        },
        ("day", "team", "agent_id", "category_id", "rule_id", "status"),
    ),
    "risk_alerts": Dataset(
        risk_alerts,
        {
            "alerts": lambda t: _count(t),
            "conversations": lambda t: func.count(func.distinct(t.c.conversation_id)),
            "agents": lambda t: func.count(func.distinct(t.c.agent_id)),
        },
        ("day", "team", "agent_id", "rule_id"),
    ),
    "coaching_impact": Dataset(
        coaching_impacts,
        {
            "measured": lambda t: _count(t),
            "mean_difference": lambda t: func.avg(t.c.difference),
            "improved": lambda t: _count(t, t.c.ci_low > 0),
            "worsened": lambda t: _count(t, t.c.ci_high < 0),
        },
        ("day", "team", "agent_id", "category_id", "rule_id"),
    ),
}
# Groupings that are not columns: a week is the Monday that starts it.
DERIVED = {"week": lambda t: cast(func.date_trunc("week", t.c.day), Date)}


@dataclass
class Query:
    """A metrics query: equality filters on dimensions, a range of days, the dimensions to group by, and
    optionally a text the agent id must contain (the console's agent search)."""

    filters: dict[str, Any] = field(default_factory=dict)
    since: date | None = None
    until: date | None = None
    group_by: list[str] = field(default_factory=list)
    agent_contains: str | None = None


def groupable(ds: Dataset) -> tuple[str, ...]:
    return (*ds.dims, *(("week",) if "day" in ds.dims else ()))


def _dimension(ds: Dataset, name: str) -> ColumnElement[Any]:
    return DERIVED[name](ds.table) if name in DERIVED else ds.table.c[name]


def where(ds: Dataset, q: Query, principal: Principal) -> list[ColumnElement[bool]]:
    t = ds.table
    clauses: list[ColumnElement[bool]] = [visible(t, principal, reviewer=ds.reviewer)]
    filters = dict(q.filters)
    for name, value in ds.defaults.items():
        if name not in filters and name not in q.group_by:
            filters[name] = value
    for name, value in filters.items():
        clauses.append(t.c[name] == value)
    if ds.has_view:
        by_version = "scorecard_version" in filters or "scorecard_version" in q.group_by
        clauses.append(t.c.view == ("version" if by_version else "latest"))
    if q.agent_contains is not None:
        clauses.append(t.c.agent_id.icontains(q.agent_contains, autoescape=True))
    if q.since is not None:
        clauses.append(t.c[ds.time] >= q.since)
    if q.until is not None:
        clauses.append(t.c[ds.time] <= q.until)
    return clauses


async def aggregate(
    session: AsyncSession,
    dataset: str,
    q: Query,
    principal: Principal,
    *,
    cursor: str | None = None,
    limit: int = 100,
    measures: Sequence[str] | None = None,
    only: Sequence[Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per group, in group-key order. Paged (limit + 1 rows, so the caller can tell whether a next
    page exists) unless `only` lists the group keys wanted (those of a page already served)."""
    ds = DATASETS[dataset]
    dims = [_dimension(ds, g) for g in q.group_by]
    sums = [ds.measures[m](ds.table).label(m) for m in (measures or ds.measures)]
    stmt = select(*(d.label(g) for d, g in zip(dims, q.group_by, strict=True)), *sums).where(
        *where(ds, q, principal)
    )
    if dims:
        stmt = stmt.group_by(*dims)
        if only is not None:
            # The listed keys name groups of the leading dimensions (the rest split them further).
            width = len(only[0]) if only else 0
            stmt = stmt.where(tuple_(*dims[:width]).in_([tuple(k) for k in only]) if only else false())
        else:
            stmt = paged(stmt, dims, cursor, limit)
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def freshness_of(session: AsyncSession, tenant: str) -> dict[str, Any]:
    row = (
        await session.execute(
            select(freshness.c.review_time, freshness.c.projected_at).where(freshness.c.tenant_id == tenant)
        )
    ).first()
    now = datetime.now(UTC)
    if row is None:
        return {"last_review_at": None, "projected_at": None, "lag_seconds": None, "age_seconds": None}
    return {
        "last_review_at": row.review_time.isoformat(),
        "projected_at": row.projected_at.isoformat(),
        # How long the newest review took to reach the figures, and how old the figures are now.
        "lag_seconds": max(0.0, (row.projected_at - row.review_time).total_seconds()),
        "age_seconds": max(0.0, (now - row.projected_at).total_seconds()),
    }


async def scorecard(session: AsyncSession, tenant: str, scorecard_id: str, version: int) -> str | None:
    """A published scorecard version's JSON, or None."""
    row = (
        await session.execute(
            select(cast(scorecards.c.body, Text)).where(
                scorecards.c.tenant_id == tenant,
                scorecards.c.scorecard_id == scorecard_id,
                scorecards.c.version == version,
            )
        )
    ).first()
    return row[0] if row else None


async def current_reviews(
    session: AsyncSession, principal: Principal, q: Query, kind: str, scorecard_id: str
) -> AsyncIterator[Any]:
    """The current revision of every review of `kind` and scorecard in the scope, from a server-side cursor."""
    t = reviews
    stmt = select(t.c.score, t.c.passed, t.c.auto_failed, cast(t.c.ratings, Text).label("ratings")).where(
        visible(t, principal), t.c.kind == kind, t.c.scorecard_id == scorecard_id
    )
    for name in ("team", "agent_id", "channel"):
        if name in q.filters:
            stmt = stmt.where(t.c[name] == q.filters[name])
    if q.since is not None:
        stmt = stmt.where(t.c.day >= q.since)
    if q.until is not None:
        stmt = stmt.where(t.c.day <= q.until)
    result = await session.stream(stmt.execution_options(yield_per=5000))
    async for row in result:
        yield row
