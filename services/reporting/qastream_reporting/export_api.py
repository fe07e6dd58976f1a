"""`GET /v1/exports/{dataset}.{csv|parquet}`: any time range, streamed, within the caller's visibility."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from qastream_events.json_input import IsoDate
from qastream_reporting import exports
from qastream_reporting.query import unprocessable
from qastream_shared.auth import Principal, require

router = APIRouter(prefix="/v1/exports", tags=["exports"])
Reader = Annotated[Principal, require()]
MEDIA = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


@router.get(
    "/{dataset}.{fmt}",
    response_class=StreamingResponse,
    responses={200: {"description": "The rows, as a file", "content": {m: {} for m in MEDIA.values()}}},
)
async def export(
    request: Request,
    dataset: Annotated[Literal["reviews", "ratings", "disputes", "coaching_tasks", "aggregates"], Path()],
    fmt: Annotated[Literal["csv", "parquet"], Path()],
    principal: Reader,
    since: Annotated[IsoDate | None, Query(alias="from", description="First day (inclusive, UTC)")] = None,
    until: Annotated[IsoDate | None, Query(alias="to", description="Last day (inclusive, UTC)")] = None,
) -> StreamingResponse:
    unknown = sorted(set(request.query_params) - {"from", "to"})
    if unknown:
        raise unprocessable(unknown[0], "unknown parameter; use from, to")
    if since is not None and until is not None and since > until:
        raise unprocessable("from", f"the range is inverted: from {since} is after to {until}")
    chunks = exports.rows(request.app.state.runtime.engine, dataset, principal, since, until)
    body = exports.csv_stream(dataset, chunks) if fmt == "csv" else exports.parquet_stream(dataset, chunks)
    return StreamingResponse(
        body,
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{dataset}.{fmt}"'},
    )
