"""Query parameters → a store.Query, with the caller's scope checked.

Bad input gets a 422 naming the parameter (an unknown name, a dimension the metric does not have, an
inverted time range); a scope the caller may not see gets a 403 (auth.may_see, the one visibility rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Query, Request

from qastream_events.json_input import IsoDate
from qastream_reporting.store import DATASETS, groupable
from qastream_reporting.store import Query as MetricsQuery
from qastream_shared.auth import Principal, may_see
from qastream_shared.paging import CursorParam, LimitParam

FILTERS = (
    "team",
    "agent_id",
    "channel",
    "scorecard_id",
    "scorecard_version",
    "kind",
    "category_id",
    "root_cause",
    "reviewer_id",
    "outcome",
    "rule_id",
    "status",
    "measure",
)
PAGING = ("cursor", "limit")
SEARCH = "agent_contains"


def unprocessable(field: str, message: str) -> HTTPException:
    return HTTPException(
        422,
        {
            "title": "Unprocessable Content",
            "detail": f"{field}: {message}",
            "errors": [{"field": field, "message": message}],
        },
    )


@dataclass
class Params:
    """Every parameter a metrics endpoint may take; each endpoint accepts the ones its data has."""

    request: Request
    since: date | None
    until: date | None
    group_by: list[str]
    filters: dict[str, Any]
    cursor: str | None
    limit: int
    agent_contains: str | None = None


def params(
    request: Request,
    since: Annotated[IsoDate | None, Query(alias="from", description="First day (inclusive, UTC)")] = None,
    until: Annotated[IsoDate | None, Query(alias="to", description="Last day (inclusive, UTC)")] = None,
    group_by: Annotated[
        list[str] | None, Query(description="Dimensions to group by (repeat): day, week, team, …")
    ] = None,
    team: str | None = None,
    agent_id: str | None = None,
    channel: str | None = None,
    scorecard_id: str | None = None,
    scorecard_version: Annotated[int | None, Query(ge=1)] = None,
    kind: Literal["auto", "manual", "combined", "calibration"] | None = None,
    category_id: str | None = None,
    root_cause: str | None = None,
    reviewer_id: str | None = None,
    outcome: Literal["accepted", "partially_accepted", "rejected"] | None = None,
    rule_id: str | None = None,
    status: Literal["open", "acknowledged", "completed", "dismissed"] | None = None,
    measure: Literal["qa", "pcsat"] | None = None,
    agent_contains: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Agents whose id contains this text (any case)"),
    ] = None,
    cursor: CursorParam = None,
    limit: LimitParam = 100,
) -> Params:
    given = {
        "team": team,
        "agent_id": agent_id,
        "channel": channel,
        "scorecard_id": scorecard_id,
        "scorecard_version": scorecard_version,
        "kind": kind,
        "category_id": category_id,
        "root_cause": root_cause,
        "reviewer_id": reviewer_id,
        "outcome": outcome,
        "rule_id": rule_id,
        "status": status,
        "measure": measure,
    }
    return Params(
        request,
        since,
        until,
        group_by or [],
        {k: v for k, v in given.items() if v is not None},
        cursor,
        limit,
        agent_contains,
    )


def metrics_query(
    dataset: str,
    p: Params,
    principal: Principal,
    *,
    refuse: tuple[str, ...] = (),
    allow: tuple[str, ...] = (),
) -> MetricsQuery:
    """The store query for one dataset; `refuse` names filters the endpoint fixes itself, `allow` extra
    ones it handles itself."""
    known = {"from", "to", "group_by", SEARCH, *FILTERS, *PAGING}
    unknown = sorted(set(p.request.query_params) - known)
    if unknown:
        raise unprocessable(unknown[0], f"unknown parameter; use {', '.join(sorted(known))}")
    ds = DATASETS[dataset]
    for name in p.filters:
        if (name not in ds.dims and name not in allow) or name in refuse or name == "day":
            raise unprocessable(name, f"this metric cannot be filtered by {name}")
    dims = groupable(ds)
    for g in p.group_by:
        if g not in dims or g in refuse:
            raise unprocessable("group_by", f"{g!r} is not a dimension of this metric; use {', '.join(dims)}")
    if p.agent_contains is not None and "agent_id" not in ds.dims:
        raise unprocessable(SEARCH, "this metric has no agents to search")
    if len(set(p.group_by)) != len(p.group_by):
        raise unprocessable("group_by", "a dimension is repeated")
    if p.since is not None and p.until is not None and p.since > p.until:
        raise unprocessable("from", f"the range is inverted: from {p.since} is after to {p.until}")
    wanted_agent = p.filters.get("agent_id") or principal.agent_id
    wanted_team = p.filters.get("team") or principal.team
    wanted_reviewer = p.filters.get("reviewer_id") or principal.agent_id
    if not may_see(principal, agent_id=wanted_agent, team=wanted_team, reviewer_id=wanted_reviewer):
        raise HTTPException(403, f"a {principal.role.value} key may not see this scope")
    filters = {k: v for k, v in p.filters.items() if k not in allow}
    return MetricsQuery(
        filters=filters,
        since=p.since,
        until=p.until,
        group_by=list(p.group_by),
        agent_contains=p.agent_contains,
    )
