"""The metrics API (JSON): every figure per tenant and scope, paged by group, with its freshness.

Thin: parameters → store (SQL) → metrics (formulas). Every response carries `freshness`: when the newest
review reached the figures and how long that took after the review event.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_reporting import metrics, store
from qastream_reporting import shadow as shadow_scoring
from qastream_reporting.query import Metric, Params, metrics_query, params_of
from qastream_shared.api_contract import problem_response
from qastream_shared.auth import Principal, require
from qastream_shared.paging import page_of
from qastream_shared.request_work import work
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.scorecard import Scorecard


async def _one_session(request: Request) -> AsyncIterator[None]:
    """One database session per request, shared by its queries: each checkout costs a round trip."""
    async with work(request) as uow:
        request.state.db = uow.session
        yield


router = APIRouter(prefix="/v1/metrics", tags=["metrics"], dependencies=[Depends(_one_session)])
Reader = Annotated[Principal, require()]


def takes(dataset: str, **declared: Any) -> Any:
    """An endpoint's parameters: `dataset`'s dimensions, declared once for its schema and validation."""
    return Depends(params_of(Metric(dataset, **declared)))


@contextlib.asynccontextmanager
async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    yield request.state.db


async def _respond(
    request: Request,
    metric: str,
    q: store.Query,
    principal: Principal,
    rows: list[dict[str, Any]],
    limit: int,
    shape: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    extra: Callable[[list[dict[str, Any]]], Any] | None = None,
) -> dict[str, Any]:
    page, cursor = page_of(rows, q.group_by, limit) if q.group_by else (rows, None)
    if extra is not None:
        await extra(page)
    async with _session(request) as session:
        fresh = await store.freshness_of(session, principal.tenant_id)
    items = [{**{g: _plain(r[g]) for g in q.group_by}, **shape(r)} for r in page]
    return {
        "metric": metric,
        "group_by": q.group_by,
        "items": items,
        "next_cursor": cursor,
        "freshness": fresh,
    }


def _plain(v: Any) -> Any:
    return v.isoformat() if hasattr(v, "isoformat") else v


async def _simple(
    request: Request,
    dataset: str,
    p: Params,
    principal: Principal,
    shape: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    q = metrics_query(p, principal)
    async with _session(request) as session:
        rows = await store.aggregate(session, dataset, q, principal, cursor=p.cursor, limit=p.limit)
    return await _respond(request, dataset, q, principal, rows, p.limit, shape)


@router.get("/quality")
async def quality(request: Request, principal: Reader, p: Params = takes("quality")) -> dict[str, Any]:
    """IQS (with its interval), pass rate and auto-fail rate; `kind` auto, manual or combined (default)."""
    return await _simple(request, "quality", p, principal, metrics.quality)


@router.get("/categories")
async def categories(request: Request, principal: Reader, p: Params = takes("categories")) -> dict[str, Any]:
    """Mean score per category (group by category_id), N/A ratings apart."""
    return await _simple(request, "categories", p, principal, metrics.category)


@router.get("/root-causes")
async def root_causes(
    request: Request, principal: Reader, p: Params = takes("root_causes")
) -> dict[str, Any]:
    """Root-cause tag counts; group by day or week for their trend."""
    return await _simple(request, "root_causes", p, principal, lambda r: {"count": int(r["n"])})


@router.get("/agreement")
async def agreement(request: Request, principal: Reader, p: Params = takes("agreement")) -> dict[str, Any]:
    """AutoQA vs human, category by category, on conversations both scored under one scorecard version:
    Krippendorff's α (ordinal, on the 0..1 category scores), exact agreement and the mean difference."""
    q = metrics_query(p, principal)
    async with _session(request) as session:
        rows = await store.aggregate(session, "agreement", q, principal, cursor=p.cursor, limit=p.limit)
    alphas: dict[tuple[Any, ...], float | None] = {}

    async def alpha(page: list[dict[str, Any]]) -> None:
        pq = store.Query(
            filters=q.filters,
            since=q.since,
            until=q.until,
            group_by=[*q.group_by, "auto_score", "manual_score"],
            agent_contains=q.agent_contains,
        )
        keys = [tuple(r[g] for g in q.group_by) for r in page] if q.group_by else None
        async with _session(request) as session:
            found = await store.aggregate(
                session, "agreement_pairs", pq, principal, measures=["n"], only=keys
            )
        pairs: dict[tuple[Any, ...], list[tuple[float, float, int]]] = {}
        for r in found:
            pairs.setdefault(tuple(r[g] for g in q.group_by), []).append(
                (r["auto_score"], r["manual_score"], int(r["n"]))
            )
        alphas.update({k: metrics.agreement_alpha(v) for k, v in pairs.items()})

    def shape(r: dict[str, Any]) -> dict[str, Any]:
        return {**metrics.agreement(r), "alpha": alphas.get(tuple(r[g] for g in q.group_by))}

    return await _respond(request, "agreement", q, principal, rows, p.limit, shape, extra=alpha)


@router.get("/customer")
async def customer(request: Request, principal: Reader, p: Params = takes("customer")) -> dict[str, Any]:
    """Coverage by people and by AutoQA, CSAT, NPS, FCR and pCSAT, per conversation."""
    return await _simple(request, "customer", p, principal, metrics.customer)


@router.get("/reviewers")
async def reviewers(request: Request, principal: Reader, p: Params = takes("reviewers")) -> dict[str, Any]:
    """Reviews done and time per review (group by reviewer_id for each reviewer's workload)."""
    return await _simple(
        request,
        "reviewers",
        p,
        principal,
        lambda r: {
            "reviews": int(r["n"]),
            "timed": int(r["n_timed"]),
            "seconds_per_review": metrics.ratio(r["sum_time_s"], r["n_timed"]),
        },
    )


@router.get("/assignments")
async def assignments(
    request: Request, principal: Reader, p: Params = takes("assignments")
) -> dict[str, Any]:
    """Reviewer assignments by their last state: open, completed, skipped, removed."""
    return await _simple(request, "assignments", p, principal, lambda r: {k: int(r[k]) for k in _counts(r)})


def _counts(r: dict[str, Any]) -> list[str]:
    return [k for k, v in r.items() if isinstance(v, int) and not isinstance(v, bool)]


@router.get("/calibrations")
async def calibrations(
    request: Request, principal: Reader, p: Params = takes("calibrations")
) -> dict[str, Any]:
    """Calibration sessions and their Krippendorff's α over time (group by day or week)."""
    return await _simple(
        request,
        "calibrations",
        p,
        principal,
        lambda r: {
            "sessions": r["sessions"],
            "closed": r["closed"],
            "alpha": r["alpha"],
            "alpha_min": r["alpha_min"],
            "alpha_max": r["alpha_max"],
        },
    )


@router.get("/coaching")
async def coaching(request: Request, principal: Reader, p: Params = takes("coaching")) -> dict[str, Any]:
    """Coaching tasks by their current status."""
    return await _simple(request, "coaching", p, principal, lambda r: {k: int(r[k]) for k in _counts(r)})


@router.get("/risk-alerts")
async def risk_alerts(
    request: Request, principal: Reader, p: Params = takes("risk_alerts")
) -> dict[str, Any]:
    """Risk alerts raised by coaching's rules: how many, on how many conversations and agents."""
    return await _simple(request, "risk_alerts", p, principal, lambda r: {k: int(r[k]) for k in _counts(r)})


@router.get("/coaching-impact")
async def coaching_impact(
    request: Request, principal: Reader, p: Params = takes("coaching_impact")
) -> dict[str, Any]:
    """Measured impact of completed tasks: the mean after − before, and how many moved beyond their CI."""
    return await _simple(
        request,
        "coaching_impact",
        p,
        principal,
        lambda r: {
            "measured": r["measured"],
            "mean_difference": r["mean_difference"],
            "improved": r["improved"],
            "worsened": r["worsened"],
        },
    )


# Dimensions the conversation rollup shares with the review rollups: a population or a rate is only
# defined when a query groups by these alone.
SHARED_SCOPE = ("day", "week", "team", "agent_id", "channel")


@router.get("/design-weighted")
async def design_weighted(
    request: Request, principal: Reader, p: Params = takes("quality", refuse=("kind",))
) -> dict[str, Any]:
    """Manual reviews' IQS weighted by the sampler's inclusion probabilities (Hájek, and Horvitz–Thompson
    over the scope's conversations), each with a 95% interval, beside the raw mean."""
    q = metrics_query(p, principal)
    q.filters["kind"] = "manual"
    async with _session(request) as session:
        rows = await store.aggregate(session, "quality", q, principal, cursor=p.cursor, limit=p.limit)
    population: dict[tuple[Any, ...], float] = {}

    async def conversations(page: list[dict[str, Any]]) -> None:
        if not set(q.group_by) <= set(SHARED_SCOPE):
            return
        scope = {k: v for k, v in q.filters.items() if k in SHARED_SCOPE}
        population.update(await _counted(request, "customer", q, scope, principal, page))

    def shape(r: dict[str, Any]) -> dict[str, Any]:
        return metrics.design_weighted(r, population.get(tuple(r[g] for g in q.group_by), 0.0))

    if q.filters.keys() - {"kind", *SHARED_SCOPE}:
        conversations_needed = None  # filtered by something conversations do not have: no population
    else:
        conversations_needed = conversations
    return await _respond(
        request, "design_weighted", q, principal, rows, p.limit, shape, extra=conversations_needed
    )


async def _counted(
    request: Request,
    dataset: str,
    q: store.Query,
    filters: dict[str, Any],
    principal: Principal,
    page: Sequence[dict[str, Any]],
) -> dict[tuple[Any, ...], float]:
    """The `n` of another dataset under `filters` and `q`'s range and grouping, for the groups of `page`:
    the denominator of a rate whose numerator is `page`."""
    cq = store.Query(
        filters=filters, since=q.since, until=q.until, group_by=q.group_by, agent_contains=q.agent_contains
    )
    keys = [tuple(r[g] for g in q.group_by) for r in page] if q.group_by else None
    async with _session(request) as session:
        found = await store.aggregate(session, dataset, cq, principal, measures=["n"], only=keys)
    return {tuple(r[g] for g in q.group_by): float(r["n"]) for r in found}


async def _correlations(
    request: Request, q: store.Query, principal: Principal, page: Sequence[dict[str, Any]]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Spearman's ρ of survey CSAT against the query's measure, for each group of the page."""
    pq = store.Query(
        filters=q.filters,
        since=q.since,
        until=q.until,
        group_by=[*q.group_by, "csat", "value"],
        agent_contains=q.agent_contains,
    )
    keys = [tuple(r[g] for g in q.group_by) for r in page] if q.group_by else None
    async with _session(request) as session:
        found = await store.aggregate(session, "csat_pairs", pq, principal, measures=["n"], only=keys)
    pairs: dict[tuple[Any, ...], list[tuple[float, float, float]]] = {}
    for r in found:
        pairs.setdefault(tuple(r[g] for g in q.group_by), []).append((r["csat"], r["value"], r["n"]))
    return {k: metrics.spearman(v) for k, v in pairs.items()}


@router.get("/csat-correlation")
async def csat_correlation(
    request: Request, principal: Reader, p: Params = takes("csat_pairs", refuse=("csat", "value"))
) -> dict[str, Any]:
    """Spearman's ρ (with n, p and its 95% interval `ci_low`..`ci_high`) between survey CSAT and the QA score
    of the same conversation (`measure=qa`, the human review when there is one), or the predicted CSAT
    (`measure=pcsat`)."""
    q = metrics_query(p, principal)
    q.filters.setdefault("measure", "qa")
    async with _session(request) as session:
        rows = await store.aggregate(
            session, "csat_pairs", q, principal, cursor=p.cursor, limit=p.limit, measures=["n"]
        )
    found: dict[tuple[Any, ...], dict[str, Any]] = {}

    async def correlate(page: list[dict[str, Any]]) -> None:
        found.update(await _correlations(request, q, principal, page))

    def shape(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "measure": q.filters["measure"],
            **found.get(tuple(r[g] for g in q.group_by), metrics.spearman([])),
        }

    return await _respond(request, "csat_correlation", q, principal, rows, p.limit, shape, extra=correlate)


@router.get("/pcsat")
async def pcsat(request: Request, principal: Reader, p: Params = takes("customer")) -> dict[str, Any]:
    """Predicted CSAT beside survey CSAT per scope, their Spearman agreement (ρ, n, p, 95% interval), and the
    share of conversations each covers (`pcsat_coverage`: with a prediction; `survey_coverage`: with a survey
    answer)."""
    q = metrics_query(p, principal)
    async with _session(request) as session:
        rows = await store.aggregate(session, "customer", q, principal, cursor=p.cursor, limit=p.limit)
    found: dict[tuple[Any, ...], dict[str, Any]] = {}

    async def correlate(page: list[dict[str, Any]]) -> None:
        cq = store.Query(
            filters={**q.filters, "measure": "pcsat"},
            since=q.since,
            until=q.until,
            group_by=q.group_by,
            agent_contains=q.agent_contains,
        )
        found.update(await _correlations(request, cq, principal, page))

    def shape(r: dict[str, Any]) -> dict[str, Any]:
        c = metrics.customer(r)
        return {
            "conversations": c["conversations"],
            "pcsat": c["pcsat"],
            "pcsat_predictions": c["pcsat_predictions"],
            "pcsat_coverage": c["pcsat_coverage"],
            "csat": c["csat"],
            "csat_responses": c["csat_responses"],
            "survey_coverage": c["survey_coverage"],
            "agreement": found.get(tuple(r[g] for g in q.group_by), metrics.spearman([])),
        }

    return await _respond(request, "pcsat", q, principal, rows, p.limit, shape, extra=correlate)


@router.get("/disputes")
async def disputes(request: Request, principal: Reader, p: Params = takes("disputes")) -> dict[str, Any]:
    """Disputes opened and their outcomes; the dispute rate is per manual review of the same scope."""
    q = metrics_query(p, principal)
    async with _session(request) as session:
        rows = await store.aggregate(session, "disputes", q, principal, cursor=p.cursor, limit=p.limit)
    reviewed: dict[tuple[Any, ...], float] = {}

    async def manual_reviews(page: list[dict[str, Any]]) -> None:
        if not set(q.group_by) <= set(SHARED_SCOPE) or q.filters.keys() - set(SHARED_SCOPE):
            return
        reviewed.update(
            await _counted(request, "quality", q, {**q.filters, "kind": "manual"}, principal, page)
        )

    def shape(r: dict[str, Any]) -> dict[str, Any]:
        key = tuple(r[g] for g in q.group_by)
        return {
            "opened": r["opened"],
            "resolved": r["resolved"],
            "accepted": r["accepted"],
            "partially_accepted": r["partially_accepted"],
            "rejected": r["rejected"],
            "mean_resolution_seconds": r["resolution_seconds"],
            "manual_reviews": int(reviewed[key]) if key in reviewed else None,
            "dispute_rate": metrics.ratio(r["opened"], reviewed.get(key, 0.0)),
        }

    return await _respond(request, "disputes", q, principal, rows, p.limit, shape, extra=manual_reviews)


SHADOW_KINDS = {"kind": Literal["auto", "manual"]}  # shadow scoring re-scores auto or manual reviews


@router.get("/shadow", responses={404: problem_response("No such scorecard version in the key's tenant")})
async def shadow(
    request: Request,
    principal: Reader,
    p: Params = takes(
        "quality", grouped=False, required=("scorecard_id", "scorecard_version"), types=SHADOW_KINDS
    ),
) -> dict[str, Any]:
    """IQS, pass rate and auto-fail rate of a scope's reviews (`kind` auto or manual) as they stand, beside
    the same reviews re-scored from their stored ratings under `scorecard_id` version `scorecard_version`."""
    q = metrics_query(p, principal)
    kind = q.filters.get("kind", "auto")
    card_id, version = q.filters["scorecard_id"], q.filters["scorecard_version"]
    # A transaction, against request_work's rule for reads: the reviews stream from a server-side cursor,
    # which PostgreSQL opens only inside one.
    runtime: ServiceRuntime = request.app.state.runtime
    async with runtime.unit_of_work() as uow:
        session = uow.session
        body = await store.scorecard(session, principal.tenant_id, card_id, version)
        if body is None:
            raise HTTPException(404, f"no version {version} of scorecard {card_id!r} in this tenant")
        run = shadow_scoring.start(Scorecard.model_validate_json(body))
        async for row in store.current_reviews(session, principal, q, kind, card_id):
            run.add(row.score, row.passed, row.auto_failed, orjson.loads(row.ratings))
        fresh = await store.freshness_of(session, principal.tenant_id)
    return {
        "metric": "shadow",
        "scorecard_id": card_id,
        "scorecard_version": version,
        "kind": kind,
        "live": run.live.figures(),
        "shadow": run.shadow.figures(),
        "unmapped_ratings": run.unmapped,
        "freshness": fresh,
    }
