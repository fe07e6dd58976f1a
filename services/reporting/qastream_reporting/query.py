"""Query parameters → a store.Query, with the caller's scope checked.

Each endpoint declares its parameters once (`Metric`): that declaration is both its OpenAPI parameters and
their validation. Bad input gets a 422 naming the parameter (an unknown name, a dimension the metric does
not have, an inverted time range); a scope the caller may not see gets a 403 (auth.may_see, the one visibility rule).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Query, Request
from pydantic import AfterValidator

from qastream_events.json_input import IsoDate
from qastream_reporting.store import DATASETS, groupable
from qastream_reporting.store import Query as MetricsQuery
from qastream_shared.api_contract import INT32_MAX
from qastream_shared.auth import Principal, may_see
from qastream_shared.http import unprocessable
from qastream_shared.paging import CursorParam, LimitParam

# Every filter of the metrics API, declared once: its type is both what the OpenAPI document shows and what
# the request is validated against. Which filters an endpoint takes is its `Metric`'s (below).
FILTER_TYPES: dict[str, Any] = {
    "team": str,
    "agent_id": str,
    "channel": str,
    "scorecard_id": str,
    "scorecard_version": int,
    "kind": Literal["auto", "manual", "combined", "calibration"],
    "category_id": str,
    "root_cause": str,
    "reviewer_id": str,
    "outcome": Literal["accepted", "partially_accepted", "rejected"],
    "rule_id": str,
    "status": Literal["open", "acknowledged", "completed", "dismissed"],
    "measure": Literal["qa", "pcsat"],
}
BOUNDS: dict[str, dict[str, Any]] = {"scorecard_version": {"ge": 1, "le": INT32_MAX}}  # a PostgreSQL integer
SEARCH = "agent_contains"


Since = Annotated[IsoDate | None, Query(alias="from", description="First day (inclusive, UTC)")]
Until = Annotated[IsoDate | None, Query(alias="to", description="Last day (inclusive, UTC)")]


def check_request(request: Request, names: Iterable[str], since: date | None, until: date | None) -> None:
    """422 for a parameter the endpoint does not take (`names`), or an inverted range of days."""
    unknown = sorted(set(request.query_params) - set(names))
    if unknown:
        raise unprocessable(unknown[0], f"unknown parameter; use {', '.join(sorted(names))}")
    if since is not None and until is not None and since > until:
        raise unprocessable("from", f"the range is inverted: from {since} is after to {until}")


@dataclass(frozen=True)
class Metric:
    """The parameters one endpoint takes: its dataset's dimensions as filters and groupings, less those it
    fixes itself (`refuse`). `params_of` turns it into the endpoint's dependency, so the same declaration
    is the documented schema and the validation (an undocumented parameter is a 422 naming it)."""

    dataset: str
    refuse: tuple[str, ...] = ()
    required: tuple[str, ...] = ()  # filters the endpoint cannot answer without
    types: Mapping[str, Any] = field(default_factory=dict)  # narrower types than FILTER_TYPES'
    grouped: bool = True  # False: one ungrouped scope (no group_by, cursor or limit)

    @property
    def filters(self) -> tuple[str, ...]:
        dims = DATASETS[self.dataset].dims
        return tuple(f for f in FILTER_TYPES if f in dims and f not in self.refuse)

    @property
    def groupable(self) -> tuple[str, ...]:
        return tuple(g for g in groupable(DATASETS[self.dataset]) if g not in self.refuse)

    @property
    def searchable(self) -> bool:
        return "agent_id" in self.filters

    @property
    def names(self) -> frozenset[str]:
        """Every query parameter the endpoint takes."""
        paging = ("group_by", "cursor", "limit") if self.grouped else ()
        return frozenset(("from", "to", *self.filters, *paging, *((SEARCH,) if self.searchable else ())))


@dataclass
class Params:
    """The parameters of one metrics request."""

    request: Request
    since: date | None
    until: date | None
    group_by: list[str]
    filters: dict[str, Any]
    cursor: str | None
    limit: int
    agent_contains: str | None = None


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("a dimension is repeated")
    return values


def params_of(metric: Metric) -> Callable[..., Params]:
    """The dependency reading `metric`'s parameters: FastAPI documents and validates its signature."""
    query = inspect.Parameter.KEYWORD_ONLY
    wanted = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        inspect.Parameter("since", query, default=None, annotation=Since),
        inspect.Parameter("until", query, default=None, annotation=Until),
    ]
    if metric.grouped:
        dimension: Any = Literal.__getitem__(metric.groupable)
        wanted += [
            inspect.Parameter(
                "group_by",
                query,
                default=[],
                annotation=Annotated[
                    list[dimension],
                    AfterValidator(_unique),
                    Query(
                        description="Dimensions to group by (repeat)", json_schema_extra={"uniqueItems": True}
                    ),
                ],
            ),
            inspect.Parameter("cursor", query, default=None, annotation=CursorParam),
            inspect.Parameter("limit", query, default=100, annotation=LimitParam),
        ]
    for name in metric.filters:
        kind = metric.types.get(name, FILTER_TYPES[name])
        given = Query(**BOUNDS.get(name, {}))
        if name in metric.required:
            wanted.append(inspect.Parameter(name, query, annotation=Annotated[kind, given]))
        else:
            wanted.append(
                inspect.Parameter(name, query, default=None, annotation=Annotated[kind | None, given])
            )
    if metric.searchable:
        wanted.append(
            inspect.Parameter(
                SEARCH,
                query,
                default=None,
                annotation=Annotated[
                    str | None,
                    Query(
                        min_length=1,
                        max_length=200,
                        description="Agents whose id contains this text (any case)",
                    ),
                ],
            )
        )

    def read(request: Request, **given: Any) -> Params:
        since, until = given.pop("since"), given.pop("until")
        check_request(request, metric.names, since, until)
        return Params(
            request,
            since,
            until,
            given.pop("group_by", []),
            {k: given[k] for k in metric.filters if given.get(k) is not None},
            given.pop("cursor", None),
            given.pop("limit", 0),
            given.get(SEARCH),
        )

    read.__signature__ = inspect.Signature(wanted)  # type: ignore[attr-defined]
    return read


def metrics_query(p: Params, principal: Principal) -> MetricsQuery:
    """The store query for validated parameters, once the caller may see their scope (403 otherwise)."""
    wanted_agent = p.filters.get("agent_id") or principal.agent_id
    wanted_team = p.filters.get("team") or principal.team
    wanted_reviewer = p.filters.get("reviewer_id") or principal.agent_id
    if not may_see(principal, agent_id=wanted_agent, team=wanted_team, reviewer_id=wanted_reviewer):
        raise HTTPException(403, f"a {principal.role.value} key may not see this scope")
    return MetricsQuery(
        filters=dict(p.filters),
        since=p.since,
        until=p.until,
        group_by=list(p.group_by),
        agent_contains=p.agent_contains,
    )
