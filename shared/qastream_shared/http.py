"""The FastAPI side every service shares: problem documents (RFC 9457), limits, health, metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qastream_shared.db import Attempt, attempt_var
from qastream_shared.settings import Settings
from qastream_shared.transient import is_transient

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
MAX_BODY_BYTES = 10 * 1024 * 1024


def field_errors(errors: list[dict[str, str]]) -> HTTPException:
    """A 422 problem naming each field that is wrong (`errors`: field and message), as validation answers."""
    return HTTPException(422, {"title": "Unprocessable Content", "detail": _detail(errors), "errors": errors})


def unprocessable(field: str, message: str) -> HTTPException:
    return field_errors([{"field": field, "message": message}])


def _detail(errors: list[dict[str, str]]) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method some route serves on `path` (Starlette's own 405 names only the first route's)."""
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return methods


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts) or "body"


def validation_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    return [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", ""))} for e in errors[:50]]


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, f"body exceeds the limit of {MAX_BODY_BYTES} bytes")


class BodyLimit:
    """Caps every request body at MAX_BODY_BYTES, so a hostile client cannot exhaust memory.

    A declared Content-Length over the limit is refused before anything is read. A chunked body has no
    length to check, so the bytes are counted as the app reads them, and reading past the limit raises
    BodyTooLarge (an HTTPException: FastAPI's body parsing lets it through to the problem handler).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            if not length.isdigit():
                await problem(400, "Bad Request", "Content-Length is not a number")(scope, receive, send)
                return
            if int(length) > MAX_BODY_BYTES:
                await _too_large(scope, receive, send)
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY_BYTES:
                    raise BodyTooLarge()
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await _too_large(scope, receive, send)


class RetryDeadConnection:
    """Runs a request once more when its pooled database connection turns out dead (PostgreSQL restarted or
    ended the backend since the connection was pooled) before it committed anything (a commit, or a write
    outside a transaction: db.attempt_var) and before it answered.

    Pools no longer ping a connection before every checkout (db.create_engine): this is what keeps a stale
    connection from costing a request. The failed connection invalidates the pool, so the second run gets
    a fresh one. A database that stays unreachable is a 503 with Retry-After rather than a 500. The body
    read by the first run is replayed to the second.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen: list[Message] = []
        replay: list[Message] = []
        started = False

        async def recording() -> Message:
            message = replay.pop(0) if replay else await receive()
            seen.append(message)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        for run in (1, 2):
            attempt = Attempt()
            token = attempt_var.set(attempt)
            try:
                await self.app(scope, recording, watched)
                return
            except PoolTimeout:
                # Every pooled connection stayed busy past the pool's timeout: the service is overloaded,
                # which a client should hear as "come back", not as a server bug.
                if started:
                    raise
                await _unavailable("no database connection came free in time; try again shortly")(
                    scope, receive, send
                )
                return
            except DBAPIError as exc:
                if started:
                    raise
                if run == 1 and exc.connection_invalidated and not attempt.committed:
                    log.warning(
                        "database connection was dead; running %s %s again", scope["method"], scope["path"]
                    )
                    replay[:] = seen
                    seen.clear()
                    continue
                if not is_transient(exc):
                    raise
                await _unavailable("the database is unavailable; try again shortly")(scope, receive, send)
                return
            finally:
                attempt_var.reset(token)


def _unavailable(detail: str) -> JSONResponse:
    response = problem(503, "Service Unavailable", detail)
    response.headers["Retry-After"] = "1"
    return response


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    exc = BodyTooLarge()
    await problem(413, "Content Too Large", str(exc.detail))(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_middleware(RetryDeadConnection)
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        return problem(422, "Unprocessable Content", _detail(errors), errors=errors)

    # Starlette's own (404 for an unknown path, 405) as well as the app's: every error is a problem.
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            allow = ", ".join(sorted(allowed_methods(app, request.url.path)))
            response = problem(
                405, "Method Not Allowed", f"{request.method} is not allowed on this path; allowed: {allow}"
            )
            response.headers["Allow"] = allow
            return response
        if isinstance(exc.detail, dict):
            return problem(
                exc.status_code,
                exc.detail.get("title", "Error"),
                **{k: v for k, v in exc.detail.items() if k != "title"},
            )
        title = {
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            409: "Conflict",
            413: "Content Too Large",
            415: "Unsupported Media Type",
        }.get(exc.status_code, "Error")
        response = problem(exc.status_code, title, str(exc.detail))
        response.headers.update(exc.headers or {})
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
            allow_headers=["content-type", "x-csrf-token", "idempotency-key"],
            max_age=600,
        )
