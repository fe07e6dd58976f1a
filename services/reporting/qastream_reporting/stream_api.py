"""`GET /v1/stream`: server-sent events pushing a scope's figures as reviews reach them.

The first event carries the figures as they are; each later one follows a commit that changed the
caller's tenant, and only when the scope's figures moved. Wake-ups coalesce: a burst of commits while the
figures are read costs one more read, not one per commit.
The scope takes the filters of /v1/metrics/quality, checked the same way (422, 403).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse

from qastream_reporting import metrics, store
from qastream_reporting.changes import Changes
from qastream_reporting.query import Metric, Params, metrics_query, params_of
from qastream_shared.auth import Principal, require
from qastream_shared.request_work import work

router = APIRouter(prefix="/v1", tags=["stream"])
Reader = Annotated[Principal, require()]
# The scope takes the quality metric's filters; one scope, so no grouping or paging.
P = Annotated[Params, Depends(params_of(Metric("quality", grouped=False)))]
PING_S = 15


def changes(request: Request) -> Changes:
    runtime = request.app.state.runtime
    found = runtime.components.get("changes")
    if found is None:
        found = runtime.components["changes"] = Changes(runtime.settings, runtime.schema)
    assert isinstance(found, Changes)
    return found


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={200: {"description": "Server-sent events", "content": {"text/event-stream": {}}}},
)
async def stream(request: Request, p: P, principal: Reader) -> EventSourceResponse:
    """Event `metrics`: {"quality": …, "customer": …, "freshness": …} for the scope, whenever it changes."""
    q = metrics_query(p, principal)
    customer_q = store.Query(
        filters={k: v for k, v in q.filters.items() if k in ("team", "agent_id", "channel")},
        since=q.since,
        until=q.until,
        agent_contains=q.agent_contains,
    )

    async def figures() -> dict[str, Any]:
        async with work(request) as uow:
            session = uow.session
            quality = (await store.aggregate(session, "quality", q, principal))[0]
            customer = (await store.aggregate(session, "customer", customer_q, principal))[0]
            fresh = await store.freshness_of(session, principal.tenant_id)
        return {
            "quality": metrics.quality(quality),
            "customer": metrics.customer(customer),
            "freshness": fresh,
        }

    async def events() -> AsyncIterator[ServerSentEvent]:
        async with changes(request).subscribe(principal.tenant_id) as woken:
            last = None
            while True:
                now = await figures()
                moved = {k: v for k, v in now.items() if k != "freshness"}
                if moved != last:
                    last = moved
                    yield ServerSentEvent(data=orjson.dumps(now).decode(), event="metrics")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.get(), PING_S)

    return EventSourceResponse(events(), ping=PING_S)
