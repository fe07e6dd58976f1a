"""The FastAPI side every service shares: problem documents (RFC 9457), limits, health, metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from qastream_shared.settings import Settings

PROBLEM = "application/problem+json"
MAX_BODY_BYTES = 10 * 1024 * 1024


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts) or "body"


def validation_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    return [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", ""))} for e in errors[:50]]


class BodyLimit(BaseHTTPMiddleware):
    """Refuses oversized bodies before they are read, so a hostile client cannot exhaust memory."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > MAX_BODY_BYTES
            except ValueError:
                return problem(400, "Bad Request", "Content-Length is not a number")
            if too_big:
                return problem(413, "Content Too Large", f"body exceeds {MAX_BODY_BYTES} bytes")
        return await call_next(request)


def install(app: FastAPI) -> None:
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, "Unprocessable Content", detail, errors=errors)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.detail, dict):
            return problem(
                exc.status_code,
                exc.detail.get("title", "Error"),
                **{k: v for k, v in exc.detail.items() if k != "title"},
            )
        title = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}.get(
            exc.status_code, "Error"
        )
        response = problem(exc.status_code, title, str(exc.detail))
        if exc.status_code == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def allow_console(app: FastAPI, settings: Settings) -> None:
    """Lets the console's origin call this API with its session cookie (locally each service has its own
    port, so its own origin; behind one ingress there is one origin and QA_CORS_ORIGINS stays empty).

    Added last, so it is the outermost middleware and answers preflights before anything else runs.
    """
    origins = [o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["content-type", "x-csrf-token"],
            max_age=600,
        )
