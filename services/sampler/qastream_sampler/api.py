"""Sampler's HTTP API: plans (versioned), the auto-review policy, the sample log, and explain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request
from pydantic import ValidationError

from qastream_sampler.engine import UnknownConversation
from qastream_sampler.explain import explain
from qastream_sampler.explain_store import PastRetention, explain_state
from qastream_sampler.plan_store import current_plans, insert_auto_policy, insert_plan
from qastream_sampler.plans import PLAN_MODELS, AnyPlan, AutoPolicy, edit_plan, parse_plan, plan_set_problems
from qastream_sampler.sample_log_store import latest_decisions
from qastream_shared.auth import Principal, require
from qastream_shared.events import Role
from qastream_shared.http import field_errors, unprocessable, validation_errors
from qastream_shared.request_work import work
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1")
# Sampling decisions are tenant-wide (the log holds no agent or team): only roles that see the tenant read them.
Reader = Annotated[Principal, require(Role.admin, Role.qa_lead, Role.reviewer, Role.platform)]
Lead = Annotated[Principal, require(Role.admin, Role.qa_lead)]
PlanId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]


def runtime(request: Request) -> ServiceRuntime:
    rt: ServiceRuntime = request.app.state.runtime
    return rt


def _parse(body: dict[str, Any]) -> AnyPlan:
    try:
        return parse_plan(body)
    except ValidationError as exc:
        raise field_errors(validation_errors(list(exc.errors()))) from exc
    except ValueError as exc:
        raise unprocessable("body", str(exc)) from exc


async def _save(uow: UnitOfWork, tenant_id: str, plan: AnyPlan, current: dict[str, AnyPlan]) -> AnyPlan:
    problems = plan_set_problems({**current, plan.plan_id: plan}.values())
    if problems:
        raise field_errors([{"field": "priority", "message": p} for p in problems])
    await insert_plan(uow.session, tenant_id, plan)
    return plan


@router.get("/plans")
async def list_plans(request: Request, principal: Reader) -> list[dict[str, Any]]:
    async with work(request) as uow:
        return [
            p.model_dump(mode="json")
            for p in (await current_plans(uow.session, principal.tenant_id)).values()
        ]


# The body is parsed by hand (a plan of any kind, version 1); the schema names the kinds it may be.
_PLAN_BODY = {
    "oneOf": [{"$ref": f"#/components/schemas/{m.__name__}"} for m in PLAN_MODELS],
    "discriminator": {"propertyName": "kind"},
    "required": ["kind"],
}


@router.post(
    "/plans",
    status_code=201,
    responses={409: {"description": "A plan with this plan_id exists: edit it with PUT"}},
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _PLAN_BODY}}}
    },
)
async def create_plan(
    request: Request, principal: Lead, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """Random, stratified or targeted (field `kind`). Overlapping plans may not share a priority."""
    plan = _parse(body).model_copy(update={"version": 1})  # a new plan is version 1, whatever it says
    async with work(request) as uow:
        current = await current_plans(uow.session, principal.tenant_id)
        if plan.plan_id in current:
            raise HTTPException(
                409, f"plan {plan.plan_id!r} exists; edit it with PUT /v1/plans/{plan.plan_id}"
            )
        return (await _save(uow, principal.tenant_id, plan, current)).model_dump(mode="json")


@router.put("/plans/{plan_id}")
async def edit(
    request: Request, plan_id: PlanId, principal: Lead, changes: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """An edit publishes version n+1; earlier decisions keep the version they were made under."""
    async with work(request) as uow:
        current = await current_plans(uow.session, principal.tenant_id)
        if plan_id not in current:
            raise HTTPException(404, f"no plan {plan_id!r} in this tenant")
        try:
            plan = edit_plan(current[plan_id], changes)
        except ValidationError as exc:
            raise field_errors(validation_errors(list(exc.errors()))) from exc
        except ValueError as exc:
            raise unprocessable("body", str(exc)) from exc
        return (await _save(uow, principal.tenant_id, plan, current)).model_dump(mode="json")


@router.post("/plans/{plan_id}/pause")
async def pause(request: Request, plan_id: PlanId, principal: Lead) -> dict[str, Any]:
    return await edit(request, plan_id, principal, {"paused": True})


@router.post("/plans/{plan_id}/resume")
async def resume(request: Request, plan_id: PlanId, principal: Lead) -> dict[str, Any]:
    return await edit(request, plan_id, principal, {"paused": False})


@router.put("/auto-policy")
async def put_auto_policy(request: Request, principal: Lead, policy: AutoPolicy) -> dict[str, Any]:
    """Which conversations AutoQA scores: all (default) or a rate per channel, to bound LLM cost."""
    async with work(request) as uow:
        saved = await insert_auto_policy(uow.session, principal.tenant_id, policy)
    return saved.model_dump(mode="json")


@router.get("/samples")
async def samples(
    request: Request,
    principal: Reader,
    conversation_id: Annotated[str | None, Query(max_length=200)] = None,
    plan_id: Annotated[str | None, Query(max_length=100)] = None,
    purpose: Annotated[str | None, Query(pattern="^(auto|manual)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The sample log: every decision, with plan version, stratum, rule, inclusion probability and reason."""
    async with work(request) as uow:
        rows = await latest_decisions(
            uow.session,
            principal,
            conversation_id=conversation_id,
            plan_id=plan_id,
            purpose=purpose,
            limit=limit,
        )
    return [{**r, "decided_at": r["decided_at"].isoformat()} for r in rows]


@router.get("/samples/explain/{conversation_id}")
async def explain_conversation(
    request: Request, conversation_id: Annotated[str, Path(max_length=200)], principal: Reader
) -> list[dict[str, Any]]:
    """Which plans looked at this conversation, and why each did or did not pick it."""
    async with work(request) as uow:
        try:
            # Only this tenant's state is built, in private: the scope comes from the key.
            state = await explain_state(
                uow.session, runtime(request).settings, principal.tenant_id, conversation_id
            )
            verdicts = explain(state, conversation_id)
        except PastRetention as exc:
            raise HTTPException(404, str(exc)) from None
        except UnknownConversation:
            raise HTTPException(
                404, f"no conversation {conversation_id!r} seen by the sampler in this tenant"
            ) from None
    return [
        {
            "plan_id": v.plan_id,
            "plan_version": v.plan_version,
            "kind": v.kind,
            "purpose": v.purpose.value,
            "picked": v.picked,
            "reason": v.reason,
            "details": v.details,
        }
        for v in verdicts
    ]
