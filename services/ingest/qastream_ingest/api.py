"""Ingest's HTTP API. Handlers are thin: parse, authorise, call a use case in one unit of work."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from qastream_ingest import service
from qastream_ingest.redaction import RedactionPolicy
from qastream_ingest.tables import tables
from qastream_shared.api_contract import at_least_one_of, problem_response
from qastream_shared.auth import Principal, require, scoped
from qastream_shared.conversation import MAX_BATCH_ITEMS, Conversation, Feedback
from qastream_shared.events import Role
from qastream_shared.http import problem
from qastream_shared.request_work import work
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.telemetry import current_traceparent

router = APIRouter(
    prefix="/v1",
    responses={
        400: problem_response("The body is not valid JSON"),
        401: problem_response("Missing, invalid or revoked API key"),
        403: problem_response("The key's role may not do this"),
        422: problem_response("Invalid request; `errors` names each field"),
    },
)
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: problem_response("No such resource in the key's tenant")}

Writer = Annotated[Principal, require(Role.admin, Role.platform)]
Reader = Annotated[Principal, require()]
FeedbackWriter = Annotated[Principal, require(Role.admin, Role.platform, Role.qa_lead)]
Admin = Annotated[Principal, require(Role.admin)]
# NUL is excluded too: PostgreSQL text cannot hold it.
ConversationId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\s/?#\x00]+$")]


class ItemResultOut(BaseModel):
    index: int
    status: str = Field(description="accepted | duplicate | rejected")
    conversation_id: str | None = None
    reason: str | None = None
    errors: list[dict[str, str]] | None = None


class IngestResult(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[ItemResultOut]


class BatchIn(BaseModel):
    conversations: list[Conversation] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class ConversationEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=at_least_one_of("escalated", "reopened"))
    escalated: bool | None = None
    reopened: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> ConversationEvent:
        if self.escalated is None and self.reopened is None:
            raise ValueError("give at least one of escalated, reopened")
        return self


class FeedbackIn(Feedback):
    """CSAT, NPS and/or FCR after the conversation: at least one of them."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=at_least_one_of("csat", "nps", "fcr"))

    @model_validator(mode="after")
    def _something(self) -> FeedbackIn:
        if self.csat is None and self.nps is None and self.fcr is None:
            raise ValueError("give at least one of csat, nps, fcr")
        return self


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    agent_id: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=200)


class KeyOut(BaseModel):
    key_id: str
    role: Role
    agent_id: str | None = None
    team: str | None = None
    key: str | None = Field(default=None, description="Shown once, at creation")
    revoked: bool = False


def runtime(request: Request) -> ServiceRuntime:
    rt: ServiceRuntime = request.app.state.runtime
    return rt


_BODY_SCHEMA = {
    "oneOf": [
        {"$ref": "#/components/schemas/Conversation"},
        {"$ref": "#/components/schemas/BatchIn"},
    ]
}


@router.post(
    "/conversations",
    status_code=202,
    response_model=IngestResult,
    responses={
        200: {"model": IngestResult, "description": "Every item was already ingested; nothing changed"},
        413: problem_response("Body over 10 MB, or more than 1,000 items"),
        422: problem_response("No item is valid; the problem names each field and has the results"),
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}
    },
)
async def post_conversations(request: Request, principal: Writer) -> Any:
    """One conversation, or `{"conversations": [...]}` with up to 1,000. Idempotent on conversation_id.

    Answers 202 only after the accepted conversations and their events are committed together.
    Invalid items are rejected with a reason while the valid ones are accepted.
    """
    try:
        payload = orjson.loads(await request.body())  # http.BodyLimit caps it, chunked or not
    except orjson.JSONDecodeError as exc:
        return problem(400, "Bad Request", f"body is not valid JSON: {exc}")
    if isinstance(payload, dict) and "conversations" in payload and "turns" not in payload:
        items = payload["conversations"]
        if not isinstance(items, list) or not items:
            return problem(
                422,
                "Unprocessable Content",
                "conversations: must be a non-empty array",
                errors=[{"field": "conversations", "message": "must be a non-empty array"}],
            )
        if len(items) > MAX_BATCH_ITEMS:
            return problem(
                413,
                "Content Too Large",
                f"conversations: at most {MAX_BATCH_ITEMS} items per batch",
                errors=[{"field": "conversations", "message": f"at most {MAX_BATCH_ITEMS} items"}],
            )
    elif isinstance(payload, dict):
        items = [payload]
    else:
        return problem(
            422,
            "Unprocessable Content",
            'body must be a conversation object or {"conversations": [...]}',
            errors=[{"field": "body", "message": "must be an object"}],
        )
    valid, rejected = service.validate_items(items)
    accepted: list[service.ItemResult] = []
    if valid:
        async with work(request) as uow:
            accepted = await service.accept(
                uow,
                request.app.state.redactors,
                principal.tenant_id,
                valid,
                traceparent=current_traceparent(),
            )
    results = sorted(accepted + rejected, key=lambda r: r.index)
    counts = {s: sum(1 for r in results if r.status == s) for s in ("accepted", "duplicate", "rejected")}
    body = {
        "accepted": counts["accepted"],
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
        "results": [r.as_dict() for r in results],
    }
    if not valid:
        first = rejected[0]
        return problem(422, "Unprocessable Content", first.reason, errors=first.errors or [], **body)
    status = 202 if counts["accepted"] else 200
    return JSONResponse(body, status_code=status)


@router.get("/conversations/{conversation_id}", responses=NOT_FOUND)
async def get_conversation(
    request: Request, conversation_id: ConversationId, principal: Reader
) -> dict[str, Any]:
    """The stored conversation, redacted, as it was published."""
    async with work(request) as uow:
        body = await service.stored_conversation(uow, principal, conversation_id)
    if body is None:
        raise HTTPException(404, f"no conversation {conversation_id!r} in this tenant")
    return body


@router.post("/conversations/{conversation_id}/feedback", status_code=202, responses=NOT_FOUND)
async def post_feedback(
    request: Request,
    conversation_id: ConversationId,
    fb: Annotated[FeedbackIn, Body()],
    principal: FeedbackWriter,
) -> dict[str, str]:
    """CSAT (1–5), NPS (0–10) and/or FCR that arrive after the conversation."""
    async with work(request) as uow:
        found = await service.record_feedback(
            uow, principal.tenant_id, conversation_id, fb, current_traceparent()
        )
    if not found:
        raise HTTPException(404, f"no conversation {conversation_id!r} in this tenant")
    return {"status": "recorded"}


@router.post("/conversations/{conversation_id}/events", status_code=202, responses=NOT_FOUND)
async def post_event(
    request: Request, conversation_id: ConversationId, ev: ConversationEvent, principal: FeedbackWriter
) -> dict[str, str]:
    """Escalated or reopened, after the conversation closed."""
    async with work(request) as uow:
        found = await service.record_update(
            uow, principal.tenant_id, conversation_id, ev.escalated, ev.reopened, current_traceparent()
        )
    if not found:
        raise HTTPException(404, f"no conversation {conversation_id!r} in this tenant")
    return {"status": "recorded"}


@router.get("/tenant", responses=NOT_FOUND)
async def get_tenant(request: Request, principal: Reader) -> dict[str, Any]:
    t = tables["tenants"]
    async with work(request) as uow:
        row = (await uow.session.execute(select(t).where(scoped(t, principal)))).mappings().first()
    if row is None:
        raise HTTPException(404, "tenant not found")
    return {
        "tenant_id": row["tenant_id"],
        "name": row["name"],
        "retention_days": row["retention_days"],
        "role": principal.role.value,
    }


@router.get("/tenant/redaction-policy", response_model=RedactionPolicy)
async def get_policy(request: Request, principal: Admin) -> Any:
    async with work(request) as uow:
        return (await request.app.state.redactors.for_tenant(uow, principal.tenant_id)).policy


@router.put("/tenant/redaction-policy", response_model=RedactionPolicy)
async def put_policy(request: Request, policy: RedactionPolicy, principal: Admin) -> Any:
    async with work(request) as uow:
        await service.set_policy(uow, principal.tenant_id, policy)
    return policy


@router.post("/keys", status_code=201, response_model=KeyOut)
async def post_key(request: Request, body: KeyIn, principal: Admin) -> Any:
    async with work(request) as uow:
        key_id, key = await service.create_key(uow, principal.tenant_id, body.role, body.agent_id, body.team)
    return KeyOut(key_id=key_id, role=body.role, agent_id=body.agent_id, team=body.team, key=key)


@router.get("/keys", response_model=list[KeyOut])
async def list_keys(request: Request, principal: Admin) -> Any:
    k = tables["api_keys"]
    async with work(request) as uow:
        rows = (
            await uow.session.execute(select(k).where(scoped(k, principal)).order_by(k.c.created_at))
        ).mappings()
        return [
            KeyOut(
                key_id=r["key_id"],
                role=Role(r["role"]),
                agent_id=r["agent_id"],
                team=r["team"],
                revoked=r["revoked_at"] is not None,
            )
            for r in rows
        ]


@router.delete("/keys/{key_id}", status_code=204, responses=NOT_FOUND)
async def delete_key(
    request: Request, key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$")], principal: Admin
) -> Response:
    async with work(request) as uow:
        done = await service.revoke_key(uow, principal.tenant_id, key_id)
    runtime(request).key_cache.forget(
        key_id
    )  # refused on this replica's very next request; on the others within the TTL
    if not done:
        raise HTTPException(404, f"no active key {key_id!r} in this tenant")
    return Response(status_code=204)
