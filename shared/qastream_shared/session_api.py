"""Sign in and out of the console: `POST /v1/session` trades an API key for the session cookies."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from qastream_shared.auth import AnyRole, session_secret
from qastream_shared.events import Role
from qastream_shared.http import PROBLEM
from qastream_shared.keys import InvalidApiKey, parse_key_id, verify_key
from qastream_shared.sessions import CSRF_COOKIE, SESSION_COOKIE, csrf_token, issue, verify
from qastream_shared.settings import Settings


def _problem(description: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "detail": {"type": "string"}}}
    return {"description": description, "content": {PROBLEM: {"schema": schema}}}


router = APIRouter(
    prefix="/v1/session",
    tags=["session"],
    responses={
        400: _problem("The body is not valid JSON"),
        401: _problem("Invalid or revoked API key, or no valid session"),
        403: _problem(
            "Sessions are off here (QA_SESSION_SECRET unset), or a cookie write without its CSRF token"
        ),
        422: _problem("Invalid request; `errors` names each field"),
    },
)


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(min_length=1, max_length=200)


class Me(BaseModel):
    tenant_id: str
    role: Role
    key_id: str
    agent_id: str | None = None
    team: str | None = None


class SessionOut(Me):
    expires_at: int = Field(description="Unix seconds")
    csrf_token: str = Field(description="Send it as X-CSRF-Token on writes made with the session cookie")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


@router.post("", response_model=SessionOut)
async def sign_in(request: Request, response: Response, body: SignIn) -> Any:
    """Exchanges an API key for a session: an HttpOnly, SameSite=Strict cookie, plus its CSRF token."""
    state = request.app.state
    settings: Settings = state.settings
    secret = session_secret(settings)
    refused = HTTPException(401, "invalid or revoked API key")
    try:
        key_id = parse_key_id(body.api_key)
    except InvalidApiKey:
        raise refused from None
    keys = state.tables["api_keys"]
    async with state.readers() as session:  # one read, as auth's key lookup: no transaction
        row = (await session.execute(select(keys).where(keys.c.key_id == key_id))).mappings().first()
    if row is None or row["revoked_at"] is not None:
        raise refused
    if not verify_key(body.api_key, row["key_hash"], settings.key_pepper):
        raise refused
    token = issue(key_id, row["tenant_id"], secret, settings.session_ttl_s)
    csrf = csrf_token(token, secret)
    secure = _secure(request)
    common: dict[str, Any] = {"max_age": settings.session_ttl_s, "samesite": "strict", "path": "/"}
    response.set_cookie(SESSION_COOKIE, token, httponly=True, secure=secure, **common)
    # Readable by the page (not HttpOnly) so it can echo it in X-CSRF-Token; worthless without the session.
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, secure=secure, **common)
    return SessionOut(
        tenant_id=row["tenant_id"],
        role=Role(row["role"]),
        key_id=key_id,
        agent_id=row["agent_id"],
        team=row["team"],
        expires_at=verify(token, secret).expires_at,
        csrf_token=csrf,
    )


@router.get("", response_model=Me)
async def who_am_i(principal: AnyRole) -> Any:
    return Me(
        tenant_id=principal.tenant_id,
        role=principal.role,
        key_id=principal.key_id,
        agent_id=principal.agent_id,
        team=principal.team,
    )


@router.delete("", status_code=204)
async def sign_out(request: Request) -> Response:
    """Clears the session cookies. Needs no valid session, so an expired one can always sign out."""
    response = Response(status_code=204)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", samesite="strict", secure=_secure(request))
    return response
