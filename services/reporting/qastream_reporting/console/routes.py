"""The console's pages and static files. A page is a shell: the role check, the navigation and the
services' URLs are rendered here; its script fetches the data from the owning services' APIs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from qastream_reporting.console.navigation import PAGES, home, may_open, nav
from qastream_shared.auth import Principal, may_see, principal_of
from qastream_shared.events import Role
from qastream_shared.settings import Settings

HERE = Path(__file__).parent
STATIC = (HERE / "static").resolve()
templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html
router = APIRouter(include_in_schema=False)
Slug = Annotated[str, PathParam(min_length=1, max_length=200, pattern=r"^[^\s/?#\x00]+$")]
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}


def _csp(settings: Settings) -> str:
    # No inline script or style anywhere: data reaches the page as JSON in a non-executed script tag.
    # Relative service URLs (one Ingress, one origin) are covered by 'self'.
    apis = " ".join(
        sorted({u for u in settings.service_urls.values() if u.startswith(("http://", "https://"))})
    )
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {apis}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


def _render(
    request: Request, template: str, principal: Principal | None, page: str, **extra: Any
) -> Response:
    settings: Settings = request.app.state.settings
    config = {
        "page": page,
        "services": settings.service_urls,
        "me": None
        if principal is None
        else {
            "tenant_id": principal.tenant_id,
            "role": principal.role.value,
            "agent_id": principal.agent_id,
            "team": principal.team,
        },
        **extra,
    }
    response = templates.TemplateResponse(
        request,
        template,
        {
            "me": config["me"],
            "nav": nav(principal) if principal else [],
            "page": page,
            # Escaped for a <script type="application/json"> element: "</" can never close it.
            "config": json.dumps(config).replace("</", "<\\/"),
            **extra,
        },
    )
    response.headers["Content-Security-Policy"] = _csp(settings)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


async def _signed_in(request: Request) -> Principal | None:
    try:
        return await principal_of(request)
    except HTTPException as exc:
        if exc.status_code in (401, 403):
            return None
        raise


def _to_sign_in(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/signin?next={quote(request.url.path)}", status_code=303)


def _refused(request: Request, principal: Principal, what: str) -> Response:
    response = _render(request, "refused.html", principal, "refused", what=what)
    response.status_code = 403
    return response


async def _page(request: Request, page: str, **extra: Any) -> Response:
    principal = await _signed_in(request)
    if principal is None:
        return _to_sign_in(request)
    if not may_open(principal, page):
        return _refused(
            request,
            principal,
            f"The {PAGES[page].label.lower()} page is not open to the "
            f"{principal.role.value.replace('_', ' ')} role.",
        )
    return _render(request, f"{page}.html", principal, page, **extra)


@router.get("/")
async def index(request: Request) -> Response:
    principal = await _signed_in(request)
    return RedirectResponse(home(principal) if principal else "/signin", status_code=303)


@router.get("/signin")
async def sign_in_page(request: Request) -> Response:
    return _render(request, "signin.html", await _signed_in(request), "signin")


METRICS = "/v1/metrics/"


def metric_filters(app: FastAPI) -> dict[str, list[str]]:
    """Each metric's query parameters as the reporting API declares them, so the dashboard sends a metric only
    the filters it takes (the API refuses the others: a figure not kept per scorecard version is not
    narrowed by one) and says which figures a filter leaves as they are."""
    found: dict[str, list[str]] | None = getattr(app.state, "metric_filters", None)
    if found is None:
        found = app.state.metric_filters = {
            path.removeprefix(METRICS): sorted(
                p["name"] for p in op["get"].get("parameters", []) if p["in"] == "query"
            )
            for path, op in app.openapi()["paths"].items()
            if path.startswith(METRICS) and "get" in op
        }
    return found


@router.get("/dashboard")
async def dashboard(request: Request) -> Response:
    return await _page(request, "dashboard", metric_filters=metric_filters(request.app))


@router.get("/agents/{agent_id}")
async def agent(request: Request, agent_id: Slug) -> Response:
    principal = await _signed_in(request)
    if principal is None:
        return _to_sign_in(request)
    # An agent's pages are theirs alone; team leads are narrowed by the API (it knows each agent's team).
    if principal.role is Role.agent and not may_see(principal, agent_id=agent_id, team=None):
        return _refused(request, principal, "Agents see only their own reviews.")
    return await _page(request, "agent", agent_id=agent_id)


@router.get("/reviews/{review_id}")
async def review(request: Request, review_id: Slug) -> Response:
    return await _page(request, "review", review_id=review_id)


@router.get("/workspace")
async def workspace(request: Request) -> Response:
    return await _page(request, "workspace")


@router.get("/disputes")
async def disputes(request: Request) -> Response:
    return await _page(request, "disputes")


@router.get("/calibration")
async def calibration(request: Request) -> Response:
    return await _page(request, "calibration")


@router.get("/coaching")
async def coaching(request: Request) -> Response:
    return await _page(request, "coaching")


@router.get("/plans")
async def plans(request: Request) -> Response:
    return await _page(request, "plans")


@router.get("/static/{path:path}")
async def static(path: str) -> Response:
    """The console's own files, never anything outside static/ (a resolved path must stay inside)."""
    target = (STATIC / path).resolve()
    if STATIC not in target.parents or not target.is_file() or target.suffix not in TYPES:
        return HTMLResponse("not found", status_code=404)
    return FileResponse(target, media_type=TYPES[target.suffix], headers={"Cache-Control": "no-cache"})
