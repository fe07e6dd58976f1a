"""`GET /v1/exports/{dataset}.{csv|parquet}`: any time range, streamed, within the caller's visibility."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse

from qastream_reporting import exports
from qastream_reporting.query import Since, Until, check_request
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
    since: Since = None,
    until: Until = None,
) -> StreamingResponse:
    check_request(request, ("from", "to"), since, until)
    chunks = exports.rows(request.app.state.runtime.engine, dataset, principal, since, until)
    body = exports.csv_stream(dataset, chunks) if fmt == "csv" else exports.parquet_stream(dataset, chunks)
    return StreamingResponse(
        body,
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{dataset}.{fmt}"'},
    )
