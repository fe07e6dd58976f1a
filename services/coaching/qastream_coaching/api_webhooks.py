"""Webhooks over HTTP: subscriptions CRUD, the delivery log with every attempt, and replay.

Admins and QA leads manage their tenant's webhooks. The signing secret is shown once, when created.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import AnyUrl, ConfigDict, Field, field_validator, model_validator

from qastream_coaching.api import runtime
from qastream_coaching.config_cache import cache_of
from qastream_coaching.webhooks import store
from qastream_coaching.webhooks.outbound import WEBHOOK_TYPES
from qastream_coaching.webhooks.settings import webhook_settings
from qastream_coaching.webhooks.signing import new_secret
from qastream_coaching.webhooks.ssrf import RefusedUrl, check_url
from qastream_events.json_input import JsonInput
from qastream_shared.api_contract import at_least_one_of
from qastream_shared.auth import Principal, require
from qastream_shared.events import Role
from qastream_shared.http import field_errors
from qastream_shared.paging import CursorParam, LimitParam, Page
from qastream_shared.request_work import work

router = APIRouter(prefix="/v1")
Manager = Annotated[Principal, require(Role.admin, Role.qa_lead)]
WebhookId = Annotated[str, Path(max_length=64)]
EVENT_TYPES_SCHEMA: dict[str, Any] = {"items": {"type": "string", "enum": sorted(WEBHOOK_TYPES)}}


def _types(value: list[str]) -> list[str]:
    unknown = sorted(set(value) - WEBHOOK_TYPES)
    if unknown:
        raise ValueError(f"unknown event types {unknown}; choose from {sorted(WEBHOOK_TYPES)}")
    return sorted(set(value))


class WebhookIn(JsonInput):
    model_config = ConfigDict(extra="forbid")
    url: AnyUrl
    event_types: list[str] = Field(min_length=1, json_schema_extra=EVENT_TYPES_SCHEMA)
    description: str = Field(default="", max_length=500)
    active: bool = True

    _check_types = field_validator("event_types")(_types)


class WebhookEdit(JsonInput):
    model_config = ConfigDict(extra="forbid")
    url: AnyUrl | None = None
    event_types: list[str] | None = Field(default=None, min_length=1, json_schema_extra=EVENT_TYPES_SCHEMA)
    description: str | None = Field(default=None, max_length=500)
    active: bool | None = None

    @field_validator("event_types")
    @classmethod
    def _check(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _types(value)


class ReplayIn(JsonInput):
    model_config = ConfigDict(extra="forbid", json_schema_extra=at_least_one_of("delivery_ids", "since"))
    delivery_ids: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    webhook_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @model_validator(mode="after")
    def _something(self) -> ReplayIn:
        if self.delivery_ids is None and self.since is None:
            raise ValueError("name delivery_ids, or a time range starting at since")
        return self


async def _refuse_internal(request: Request, url: AnyUrl) -> None:
    try:
        await check_url(str(url), webhook_settings(runtime(request)).allow_networks)
    except RefusedUrl as exc:
        raise field_errors([{"field": "url", "message": str(exc)}]) from None


def _view(row: dict[str, Any], *, secret: bool = False) -> dict[str, Any]:
    out = {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in row.items()
        if k not in ("tenant_id", "secret")
    }
    if secret:
        out["secret"] = row["secret"]
    return out


@router.post("/webhooks", status_code=201)
async def create_webhook(request: Request, body: WebhookIn, principal: Manager) -> dict[str, Any]:
    """Registers a URL for event types; the response carries the signing secret (whsec_…), shown only now."""
    await _refuse_internal(request, body.url)
    webhook_id = uuid.uuid4().hex
    row: dict[str, Any] = {
        "webhook_id": webhook_id,
        "tenant_id": principal.tenant_id,
        "url": str(body.url),
        "event_types": body.event_types,
        "secret": new_secret(),
        "description": body.description,
        "active": body.active,
    }
    async with work(request) as uow:
        await store.create(uow.session, row)
        saved = await store.get(uow.session, principal.tenant_id, webhook_id)
    cache_of(runtime(request)).forget(principal.tenant_id)
    assert saved is not None
    return _view(saved, secret=True)


@router.get("/webhooks", response_model=Page)
async def list_webhooks(
    request: Request, principal: Manager, cursor: CursorParam = None, limit: LimitParam = 100
) -> Any:
    async with work(request) as uow:
        rows, nxt = await store.page(uow.session, principal.tenant_id, cursor, limit)
    return Page(items=[_view(dict(r)) for r in rows], next_cursor=nxt)


async def _found(request: Request, principal: Principal, webhook_id: str) -> dict[str, Any]:
    async with work(request) as uow:
        row = await store.get(uow.session, principal.tenant_id, webhook_id)
    if row is None:
        raise HTTPException(404, f"no webhook {webhook_id!r} in this tenant")
    return row


@router.get("/webhooks/{webhook_id}")
async def get_webhook(request: Request, webhook_id: WebhookId, principal: Manager) -> dict[str, Any]:
    return _view(await _found(request, principal, webhook_id))


@router.patch("/webhooks/{webhook_id}")
async def edit_webhook(
    request: Request, webhook_id: WebhookId, body: WebhookEdit, principal: Manager
) -> dict[str, Any]:
    await _found(request, principal, webhook_id)
    values = body.model_dump(exclude_none=True)
    if body.url is not None:
        await _refuse_internal(request, body.url)
        values["url"] = str(body.url)
    async with work(request) as uow:
        if values:
            await store.change(uow.session, principal.tenant_id, webhook_id, **values)
        row = await store.get(uow.session, principal.tenant_id, webhook_id)
    cache_of(runtime(request)).forget(principal.tenant_id)
    assert row is not None
    return _view(row)


@router.delete("/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(request: Request, webhook_id: WebhookId, principal: Manager) -> None:
    """Deletes the subscription; its pending deliveries die on their next attempt, the log stays."""
    async with work(request) as uow:
        if not await store.delete(uow.session, principal.tenant_id, webhook_id):
            raise HTTPException(404, f"no webhook {webhook_id!r} in this tenant")
    cache_of(runtime(request)).forget(principal.tenant_id)


@router.get("/webhook-deliveries", response_model=Page)
async def deliveries(
    request: Request,
    principal: Manager,
    webhook_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|dead)$")] = None,
    cursor: CursorParam = None,
    limit: LimitParam = 100,
) -> Any:
    """The delivery log, newest first, each delivery with every attempt (status code, error, duration)."""
    async with work(request) as uow:
        rows, nxt = await store.delivery_page(
            uow.session, principal.tenant_id, webhook_id=webhook_id, status=status, cursor=cursor, limit=limit
        )
        tries = await store.attempts_of(uow.session, principal.tenant_id, [r["delivery_id"] for r in rows])
    items = [{**_view(dict(r)), "attempt_log": tries.get(r["delivery_id"], [])} for r in rows]
    return Page(items=items, next_cursor=nxt)


@router.post("/webhook-deliveries/replay")
async def replay(request: Request, body: ReplayIn, principal: Manager) -> dict[str, Any]:
    """Sends deliveries again (by id, or those created in [since, until)), with a fresh round of attempts."""
    async with work(request) as uow:
        ids = await store.replay(
            uow.session,
            principal.tenant_id,
            delivery_ids=body.delivery_ids,
            webhook_id=body.webhook_id,
            since=body.since,
            until=body.until,
        )
    return {"replayed": ids}
