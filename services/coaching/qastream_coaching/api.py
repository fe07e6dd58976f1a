"""Coaching's HTTP API: tasks (list, read, transitions), impact, alerts and rules (versioned)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qastream_coaching import api_queries, rule_store, task_store, transitions
from qastream_coaching.config_cache import cache_of
from qastream_coaching.impact import aggregate
from qastream_coaching.lifecycle import Action, IllegalTransition
from qastream_coaching.rules import InvalidRule, Rule, check_rule, edit_rule
from qastream_events.json_input import IsoDateTime
from qastream_shared.api_contract import VersionPath
from qastream_shared.auth import Principal, require
from qastream_shared.events import CoachingTaskStatus, Role
from qastream_shared.http import field_errors, validation_errors
from qastream_shared.paging import CursorParam, LimitParam, Page
from qastream_shared.request_work import work
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.scorecard import SLUG
from qastream_shared.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1")
Reader = Annotated[Principal, require(Role.admin, Role.qa_lead, Role.team_lead, Role.agent, Role.platform)]
Acting = Annotated[Principal, require(Role.admin, Role.qa_lead, Role.team_lead, Role.agent)]
Leads = Annotated[Principal, require(Role.admin, Role.qa_lead, Role.team_lead, Role.platform)]
Manager = Annotated[Principal, require(Role.admin, Role.qa_lead)]
TaskId = Annotated[str, Path(max_length=64)]
RuleId = Annotated[str, Path(pattern=SLUG)]


def runtime(request: Request) -> ServiceRuntime:
    rt: ServiceRuntime = request.app.state.runtime
    return rt


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def task_view(row: dict[str, Any], evidence: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = _iso({k: v for k, v in row.items() if k not in ("slot", "tenant_id")})
    if evidence is not None:
        out["evidence"] = [
            {
                **_iso({k: v for k, v in e.items() if k not in ("tenant_id", "task_id")}),
                # Scoring serves the review, its ratings and their provenance at this path.
                "review_link": f"/v1/reviews/{e['review_id']}",
            }
            for e in evidence
        ]
    return out


# --- tasks ---


@router.get("/tasks", response_model=Page)
async def list_tasks(
    request: Request,
    principal: Reader,
    agent_id: Annotated[str | None, Query(max_length=200)] = None,
    team: Annotated[str | None, Query(max_length=200)] = None,
    status: CoachingTaskStatus | None = None,
    category_id: Annotated[str | None, Query(max_length=64)] = None,
    rule_id: Annotated[str | None, Query(max_length=64)] = None,
    assignee_id: Annotated[str | None, Query(max_length=200)] = None,
    due_before: IsoDateTime | None = None,
    due_after: IsoDateTime | None = None,
    cursor: CursorParam = None,
    limit: LimitParam = 100,
) -> Any:
    """Tasks this key may see (agents: their own; team leads: their team's), oldest first."""
    filters = {
        "agent_id": agent_id,
        "team": team,
        "status": status.value if status else None,
        "category_id": category_id,
        "rule_id": rule_id,
        "assignee_id": assignee_id,
        "due_before": due_before,
        "due_after": due_after,
    }
    async with work(request) as uow:
        rows, nxt = await api_queries.task_page(uow.session, principal, filters, cursor, limit)
    return Page(items=[task_view(r) for r in rows], next_cursor=nxt)


async def _visible_task(uow: UnitOfWork, principal: Principal, task_id: str) -> dict[str, Any]:
    row = await task_store.task(uow.session, principal.tenant_id, task_id)
    if row is None or not transitions.visible_to(principal, row):
        raise HTTPException(404, f"no task {task_id!r} visible to this key")
    return row


@router.get("/tasks/{task_id}")
async def get_task(request: Request, task_id: TaskId, principal: Reader) -> dict[str, Any]:
    """The task with its evidence: each triggering review, why, the quoted turns and a link to the review."""
    async with work(request) as uow:
        row = await _visible_task(uow, principal, task_id)
        return task_view(row, await task_store.evidence_of(uow.session, principal.tenant_id, task_id))


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notes: str = Field(min_length=1, max_length=10_000)
    quiz_score: float | None = Field(default=None, ge=0, le=1)


class DismissIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


async def _transition(
    request: Request, principal: Principal, task_id: str, action: Action, **fields: Any
) -> dict[str, Any]:
    try:
        async with work(request) as uow:
            row = await transitions.transition(
                uow, cache_of(runtime(request)), principal, task_id, action, **fields
            )
    except transitions.NotFound:
        raise HTTPException(404, f"no task {task_id!r} visible to this key") from None
    except transitions.Forbidden as exc:
        raise HTTPException(403, str(exc)) from None
    except IllegalTransition as exc:
        raise HTTPException(409, str(exc)) from None
    return task_view(row)


@router.post("/tasks/{task_id}/confirm")
async def confirm(request: Request, task_id: TaskId, principal: Acting) -> dict[str, Any]:
    """A lead confirms a task opened from AutoQA-only evidence; the agent sees it from then on."""
    return await _transition(request, principal, task_id, Action.confirm)


@router.post("/tasks/{task_id}/acknowledge")
async def acknowledge(request: Request, task_id: TaskId, principal: Acting) -> dict[str, Any]:
    """The coached agent acknowledges the task."""
    return await _transition(request, principal, task_id, Action.acknowledge)


@router.post("/tasks/{task_id}/complete")
async def complete(request: Request, task_id: TaskId, body: CompleteIn, principal: Acting) -> dict[str, Any]:
    """A lead completes an acknowledged task with the session's notes and an optional quiz score (0..1)."""
    return await _transition(
        request, principal, task_id, Action.complete, notes=body.notes, quiz_score=body.quiz_score
    )


@router.post("/tasks/{task_id}/dismiss")
async def dismiss(request: Request, task_id: TaskId, body: DismissIn, principal: Acting) -> dict[str, Any]:
    return await _transition(request, principal, task_id, Action.dismiss, reason=body.reason)


# --- impact and alerts ---


@router.get("/tasks/{task_id}/impact")
async def task_impact(request: Request, task_id: TaskId, principal: Reader) -> dict[str, Any]:
    async with work(request) as uow:
        row = await _visible_task(uow, principal, task_id)
    if row["impact"] is None:
        raise HTTPException(404, f"task {task_id!r} has no impact yet (it is {row['status']})")
    return dict(row["impact"])


@router.get("/impact")
async def impact(
    request: Request, principal: Leads, by: Annotated[str, Query(pattern="^(assignee|rule|team)$")] = "rule"
) -> list[dict[str, Any]]:
    """Mean impact of the completed tasks per team lead (assignee), rule or team, with a bootstrap interval
    over the tasks: which coaching works."""
    async with work(request) as uow:
        rows = await api_queries.completed_impacts(uow.session, principal)
    column = {"assignee": "assignee_id", "rule": "rule_id", "team": "team"}[by]
    groups: dict[str | None, list[float]] = {}
    for r in rows:
        if r["impact"].get("difference") is not None:
            groups.setdefault(r[column], []).append(r["impact"]["difference"])
    out = []
    for key in sorted(groups, key=lambda k: (k is None, k or "")):
        g = aggregate(groups[key], seed=f"{principal.tenant_id}|{by}|{key}")
        out.append(
            {
                by: key,
                "tasks": g.tasks,
                "mean_difference": g.mean_difference,
                "ci_low": g.ci_low,
                "ci_high": g.ci_high,
            }
        )
    return out


@router.get("/alerts", response_model=Page)
async def list_alerts(
    request: Request, principal: Reader, cursor: CursorParam = None, limit: LimitParam = 100
) -> Any:
    async with work(request) as uow:
        rows, nxt = await api_queries.alert_page(uow.session, principal, cursor, limit)
    return Page(items=[_iso({k: v for k, v in r.items() if k != "tenant_id"}) for r in rows], next_cursor=nxt)


# --- rules ---


async def _checked(uow: UnitOfWork, tenant_id: str, rule: Rule) -> Rule:
    try:
        check_rule(rule, await rule_store.known_categories(uow.session, tenant_id))
    except InvalidRule as exc:
        raise field_errors([{"field": exc.field, "message": exc.message}]) from None
    return rule


def _parse(body: dict[str, Any]) -> Rule:
    try:
        return Rule.model_validate(body)
    except ValidationError as exc:
        raise field_errors(validation_errors(list(exc.errors()))) from None


@router.get("/rules")
async def list_rules(request: Request, principal: Leads) -> list[dict[str, Any]]:
    async with work(request) as uow:
        rules = await rule_store.current_rules(uow.session, principal.tenant_id)
    return [r.model_dump(mode="json") for r in rules.values()]


@router.post(
    "/rules",
    status_code=201,
    responses={409: {"description": "A rule with this rule_id exists: edit it with PUT"}},
    # The body is parsed by hand (a new rule is version 1, whatever it says); the schema is the rule's.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Rule"}}},
        }
    },
)
async def create_rule(
    request: Request, principal: Manager, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    rule = _parse(body).model_copy(update={"version": 1})  # checked as sent, then made version 1
    async with work(request) as uow:
        if rule.rule_id in await api_queries.rule_ids(uow.session, principal.tenant_id):
            raise HTTPException(
                409, f"rule {rule.rule_id!r} exists; edit it with PUT /v1/rules/{rule.rule_id}"
            )
        await _checked(uow, principal.tenant_id, rule)
        if not await rule_store.save_rule(uow.session, principal.tenant_id, rule):
            raise HTTPException(409, f"rule {rule.rule_id!r} was created concurrently")
    cache_of(runtime(request)).forget(principal.tenant_id)
    return rule.model_dump(mode="json")


async def _current(uow: UnitOfWork, tenant_id: str, rule_id: str) -> Rule:
    rule = (await rule_store.current_rules(uow.session, tenant_id)).get(rule_id)
    if rule is None:
        raise HTTPException(404, f"no rule {rule_id!r} in this tenant")
    return rule


@router.get("/rules/{rule_id}")
async def get_rule(request: Request, rule_id: RuleId, principal: Leads) -> dict[str, Any]:
    async with work(request) as uow:
        return (await _current(uow, principal.tenant_id, rule_id)).model_dump(mode="json")


@router.get("/rules/{rule_id}/versions/{version}")
async def get_rule_version(
    request: Request, rule_id: RuleId, version: VersionPath, principal: Leads
) -> dict[str, Any]:
    async with work(request) as uow:
        rule = await rule_store.rule_version(uow.session, principal.tenant_id, rule_id, version)
    if rule is None:
        raise HTTPException(404, f"no version {version} of rule {rule_id!r} in this tenant")
    return rule.model_dump(mode="json")


async def _edit(
    request: Request, principal: Principal, rule_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    async with work(request) as uow:
        current = await _current(uow, principal.tenant_id, rule_id)
        try:
            rule = edit_rule(current, changes)
        except InvalidRule as exc:
            raise field_errors([{"field": exc.field, "message": exc.message}]) from None
        except ValidationError as exc:
            raise field_errors(validation_errors(list(exc.errors()))) from None
        await _checked(uow, principal.tenant_id, rule)
        if not await rule_store.save_rule(uow.session, principal.tenant_id, rule):
            raise HTTPException(409, f"rule {rule_id!r} was edited concurrently; read it and retry")
    cache_of(runtime(request)).forget(principal.tenant_id)
    return rule.model_dump(mode="json")


# An edit names only the fields it changes (the rule id, trigger and version may be repeated, unchanged).
_RULE_EDIT = {
    "type": "object",
    "additionalProperties": False,
    "properties": Rule.model_json_schema(ref_template="#/components/schemas/{model}")["properties"],
}


@router.put(
    "/rules/{rule_id}",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _RULE_EDIT}}}
    },
)
async def edit(
    request: Request, rule_id: RuleId, principal: Manager, changes: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """An edit stores version n+1; tasks keep the version that opened them."""
    return await _edit(request, principal, rule_id, changes)


@router.delete("/rules/{rule_id}")
async def retire(request: Request, rule_id: RuleId, principal: Manager) -> dict[str, Any]:
    """Rules are never deleted (tasks name their version): retiring stores a paused version n+1."""
    return await _edit(request, principal, rule_id, {"paused": True})
