"""Who is calling, and the tenant scope. The tenant always comes from the API key, never from the request.

Keys are high-entropy random strings, so a peppered HMAC (keys.py) is the right hash: argon2's cost exists
to protect low-entropy passwords.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_shared.events import Role
from qastream_shared.keys import InvalidApiKey, parse_key_id, verify_key
from qastream_shared.telemetry import tenant_var


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    role: Role
    key_id: str
    agent_id: str | None = None
    team: str | None = None


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


async def authenticate(session: AsyncSession, api_keys: Table, pepper: str, key: str | None) -> Principal:
    if not key:
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'")
    try:
        key_id = parse_key_id(key)
    except InvalidApiKey:
        raise HTTPException(401, "invalid or revoked API key") from None
    row = (await session.execute(select(api_keys).where(api_keys.c.key_id == key_id))).mappings().first()
    if row is None or row["revoked_at"] is not None or not verify_key(key, row["key_hash"], pepper):
        raise HTTPException(401, "invalid or revoked API key")
    tenant_var.set(row["tenant_id"])
    return Principal(row["tenant_id"], Role(row["role"]), row["key_id"], row["agent_id"], row["team"])


def require(*roles: Role) -> Any:
    """A FastAPI dependency: the caller's principal, with 403 unless it holds one of `roles`."""
    allowed = set(roles)

    async def dependency(request: Request) -> Principal:
        app_state = request.app.state
        async with app_state.sessions() as session:
            principal = await authenticate(
                session, app_state.tables["api_keys"], app_state.settings.key_pepper, presented_key(request)
            )
        if allowed and principal.role not in allowed:
            raise HTTPException(
                403,
                f"role {principal.role.value!r} may not do this; needs one of {sorted(r.value for r in allowed)}",
            )
        return principal

    return Depends(dependency)


AnyRole = Annotated[Principal, require()]


def scoped(table: Table, principal: Principal) -> ColumnElement[bool]:
    """The one tenant filter every query goes through."""
    return table.c.tenant_id == principal.tenant_id
