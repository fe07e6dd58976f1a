"""API keys and the tenant scope. The tenant always comes from the key, never from the request.

Keys look like `qa_<key_id>_<secret>`; only HMAC-SHA256(pepper, key) is stored. Keys are high-entropy
random strings, so a peppered fast hash is the right tool (argon2's cost protects low-entropy passwords).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_shared.events import Role
from qastream_shared.telemetry import tenant_var

KEY_PREFIX = "qa"


def new_key() -> tuple[str, str]:
    """(key_id, plaintext key). The plaintext is shown once and never stored."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def hash_key(pepper: str, key: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


def parse_key_id(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


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


async def verify_key(session: AsyncSession, api_keys: Table, pepper: str, key: str | None) -> Principal:
    if not key:
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'")
    key_id = parse_key_id(key)
    row = None
    if key_id is not None:
        row = (await session.execute(select(api_keys).where(api_keys.c.key_id == key_id))).mappings().first()
    if (
        row is None
        or row["revoked_at"] is not None
        or not hmac.compare_digest(row["key_hash"], hash_key(pepper, key))
    ):
        raise HTTPException(401, "invalid or revoked API key")
    tenant_var.set(row["tenant_id"])
    return Principal(row["tenant_id"], Role(row["role"]), row["key_id"], row["agent_id"], row["team"])


def require(*roles: Role) -> Any:
    """A FastAPI dependency: the caller's principal, with 403 unless it holds one of `roles`."""
    allowed = set(roles)

    async def dependency(request: Request) -> Principal:
        app_state = request.app.state
        async with app_state.sessions() as session:
            principal = await verify_key(
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
