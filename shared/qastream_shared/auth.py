"""Who is calling, and the tenant scope. The tenant always comes from the API key, never from the request.

A caller presents either an API key (header) or a browser session (cookie, sessions.py) made from one; both
end at the same key row, so revoking a key ends its sessions too. Cookie writes need the CSRF header.

Keys are high-entropy random strings, so a peppered HMAC (keys.py) is the right hash: argon2's cost exists
to protect low-entropy passwords.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request
from sqlalchemy import ColumnElement, Table, and_, false, select

from qastream_shared.events import Role
from qastream_shared.keys import InvalidApiKey, parse_key_id, verify_key
from qastream_shared.sessions import (
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    InvalidSession,
    csrf_ok,
    verify,
)
from qastream_shared.settings import Settings
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


@dataclass(frozen=True, slots=True)
class KeyRow:
    """What auth needs of an unrevoked api_keys row."""

    key_id: str
    tenant_id: str
    role: Role
    key_hash: str
    agent_id: str | None
    team: str | None

    def principal(self) -> Principal:
        return Principal(self.tenant_id, self.role, self.key_id, self.agent_id, self.team)


class KeyCache:
    """The unrevoked key rows this replica read in the last `ttl_s` seconds, at most `size` of them.

    Every authenticated request needs its key's row; reading it each time was a round trip (and a
    connection checkout) per request. A row is trusted for `ttl_s` (QA_AUTH_CACHE_TTL_S), so a key revoked
    through another replica is refused here within that time; the replica that revokes a key, and every
    service's tenant directory as it applies ApiKeyRevoked, `forget` it at once. Unknown and revoked keys
    are never cached. The presented secret is still checked against the row's hash on every request.
    """

    def __init__(self, ttl_s: float, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._rows: OrderedDict[str, tuple[float, KeyRow]] = OrderedDict()

    def get(self, key_id: str) -> KeyRow | None:
        hit = self._rows.get(key_id)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            del self._rows[key_id]
            return None
        return hit[1]

    def put(self, row: KeyRow) -> None:
        if self.ttl_s <= 0:
            return
        self._rows[row.key_id] = (time.monotonic() + self.ttl_s, row)
        self._rows.move_to_end(row.key_id)
        while len(self._rows) > self.size:
            self._rows.popitem(last=False)

    def forget(self, key_id: str) -> None:
        self._rows.pop(key_id, None)


async def key_row(state: Any, key_id: str) -> KeyRow | None:
    """The unrevoked key `key_id`, from the cache or else one autocommit SELECT (no BEGIN/COMMIT)."""
    cache: KeyCache = state.key_cache
    if (cached := cache.get(key_id)) is not None:
        return cached
    api_keys: Table = state.tables["api_keys"]
    async with state.readers() as session:
        row = (await session.execute(select(api_keys).where(api_keys.c.key_id == key_id))).mappings().first()
    if row is None or row["revoked_at"] is not None:
        return None
    found = KeyRow(
        row["key_id"], row["tenant_id"], Role(row["role"]), row["key_hash"], row["agent_id"], row["team"]
    )
    cache.put(found)
    return found


async def authenticate(state: Any, key: str | None) -> Principal:
    if not key:
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>' or sign in")
    try:
        key_id = parse_key_id(key)
    except InvalidApiKey:
        raise HTTPException(401, "invalid or revoked API key") from None
    row = await key_row(state, key_id)
    if row is None or not verify_key(key, row.key_hash, state.settings.key_pepper):
        raise HTTPException(401, "invalid or revoked API key")
    tenant_var.set(row.tenant_id)
    return row.principal()


def session_secret(settings: Settings) -> str:
    if settings.session_secret is None:
        # Not a 5xx: the service works, it is only configured without sessions.
        raise HTTPException(
            403, "browser sessions are off here: set QA_SESSION_SECRET (the same value on every service)"
        )
    return settings.session_secret.get_secret_value()


async def authenticate_session(state: Any, token: str, *, write: bool, csrf: str | None) -> Principal:
    """The principal of a session cookie: a valid signature, not expired, CSRF checked on writes, and the
    key it was made from still issued and unrevoked in this service's copy of qa.tenants."""
    settings: Settings = state.settings
    if settings.session_secret is None:
        raise HTTPException(401, "browser sessions are off on this service (QA_SESSION_SECRET unset)")
    secret = settings.session_secret.get_secret_value()
    try:
        claims = verify(token, secret)
    except InvalidSession as exc:
        raise HTTPException(401, f"invalid session: {exc}") from None
    if write and not csrf_ok(token, csrf, secret):
        raise HTTPException(
            403, "missing or invalid CSRF token: send the qa_csrf cookie's value in the X-CSRF-Token header"
        )
    row = await key_row(state, claims.key_id)
    if row is None or row.tenant_id != claims.tenant_id:
        raise HTTPException(401, "invalid session: its API key is revoked or unknown")
    tenant_var.set(row.tenant_id)
    return row.principal()


async def principal_of(request: Request) -> Principal:
    """Whoever the request presents: an API key in a header first, else the session cookie."""
    state = request.app.state
    key = presented_key(request)
    token = request.cookies.get(SESSION_COOKIE)
    if key or not token:
        return await authenticate(state, key)
    return await authenticate_session(
        state,
        token,
        write=request.method not in SAFE_METHODS,
        csrf=request.headers.get(CSRF_HEADER),
    )


def require(*roles: Role) -> Any:
    """A FastAPI dependency: the caller's principal, with 403 unless it holds one of `roles`."""
    allowed = set(roles)

    async def dependency(request: Request) -> Principal:
        principal = await principal_of(request)
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


# Roles that see every row of their tenant; the others see only rows about themselves or their team.
TENANT_WIDE = frozenset({Role.admin, Role.qa_lead, Role.platform})


def visible(
    table: Table,
    principal: Principal,
    *,
    agent: str = "agent_id",
    team: str = "team",
    reviewer: str | None = None,
) -> ColumnElement[bool]:
    """The one visibility rule: the tenant, narrowed by role.

    Admins, QA leads and platform keys see the whole tenant; a team lead sees their team; an agent sees rows
    about themselves; a reviewer sees the rows they reviewed (`reviewer` names that column; without one, a
    reviewer sees the tenant, as on conversations they may be assigned). A key whose role needs an agent id
    or team it lacks sees nothing, never everything.
    """
    tenant = scoped(table, principal)
    role = principal.role
    if role in TENANT_WIDE:
        return tenant
    if role is Role.team_lead:
        return and_(tenant, table.c[team] == principal.team) if principal.team else false()
    if role is Role.agent:
        return and_(tenant, table.c[agent] == principal.agent_id) if principal.agent_id else false()
    if role is Role.reviewer and reviewer is not None:
        return and_(tenant, table.c[reviewer] == principal.agent_id) if principal.agent_id else false()
    return tenant


class _NoColumn(Enum):
    """`may_see(reviewer_id=...)` left out: the row has no reviewer column (not: its reviewer is NULL)."""

    NO_REVIEWER = "no reviewer column"


NO_REVIEWER = _NoColumn.NO_REVIEWER


def may_see(
    principal: Principal,
    *,
    agent_id: str | None,
    team: str | None,
    reviewer_id: str | Literal[_NoColumn.NO_REVIEWER] | None = NO_REVIEWER,
) -> bool:
    """`visible` for one row already in hand (e.g. a single resource read by id): the same rule.

    Pass `reviewer_id` for rows of a table with a reviewer column, even when it is None: like
    `visible(..., reviewer=...)` in SQL, a reviewer then sees only rows they reviewed, never unreviewed ones.
    """
    role = principal.role
    if role in TENANT_WIDE:
        return True
    if role is Role.team_lead:
        return principal.team is not None and team == principal.team
    if role is Role.agent:
        return principal.agent_id is not None and agent_id == principal.agent_id
    if role is Role.reviewer and reviewer_id is not NO_REVIEWER:
        return principal.agent_id is not None and reviewer_id == principal.agent_id
    return True
