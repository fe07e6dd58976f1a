"""Browser sessions against a real service process: any service accepts them, CSRF guards cookie writes,
and revoking the key on qa.tenants ends its sessions."""

from __future__ import annotations

import httpx
import pytest

from qastream_shared.events import Role
from qastream_shared.sessions import CSRF_HEADER, SESSION_COOKIE, csrf_token, issue
from qastream_shared.stack import free_port
from qastream_shared.testing import eventually, publish_tenant_keys, revoke_key
from qastream_shared.topics import ensure_topics

pytestmark = pytest.mark.integration

SECRET = "integration-session-secret-0123456789"
CONSOLE = "http://127.0.0.1:1"  # an origin allowed by CORS; nothing needs to listen there


async def issue_key(settings, tenant: str, role: Role) -> tuple[str, str]:
    (issued,) = await publish_tenant_keys(settings, tenant, [(role, {})])
    return issued.key_id, issued.key


async def test_sessions_are_signed_csrf_guarded_and_die_with_their_key(settings, spawn):
    await ensure_topics(settings)
    key_id, key = await issue_key(settings, "alpha", Role.admin)
    port = free_port()
    spawn(
        ["-m", "qastream_scoring"],
        {"QA_HTTP_PORT": str(port), "QA_SESSION_SECRET": SECRET, "QA_CORS_ORIGINS": CONSOLE},
    )
    token = issue(key_id, "alpha", SECRET, 3600)
    csrf = csrf_token(token, SECRET)
    body = {"settings": {"pass_mark": 0.7}}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

        async def signed_in() -> bool:
            try:
                r = await http.get("/v1/scoring-settings", cookies={SESSION_COOKIE: token})
            except httpx.TransportError:
                return False
            return r.status_code == 200

        await eventually(signed_in, within=60)

        # Signing in with the key sets both cookies; the session says who it is; signing out clears them.
        assert (await http.post("/v1/session", json={"api_key": key[:-2] + "xx"})).status_code == 401
        r = await http.post("/v1/session", json={"api_key": key})
        assert r.status_code == 200 and r.json()["role"] == "admin" and r.json()["tenant_id"] == "alpha"
        set_cookies = r.headers.get_list("set-cookie")
        session_cookie = next(c for c in set_cookies if c.startswith(f"{SESSION_COOKIE}="))
        assert (
            "HttpOnly" in session_cookie
            and "SameSite=strict" in session_cookie
            and "Max-Age=" in session_cookie
        )
        assert r.json()["csrf_token"] == csrf_token(http.cookies[SESSION_COOKIE], SECRET)
        assert (await http.get("/v1/session")).json()["key_id"] == key_id
        assert (await http.delete("/v1/session")).status_code == 204
        assert SESSION_COOKIE not in http.cookies
        assert (await http.get("/v1/session")).status_code == 401

        async def put(cookie: str, headers: dict[str, str]) -> httpx.Response:
            http.cookies.clear()
            return await http.put(
                "/v1/scoring-settings", json=body, cookies={SESSION_COOKIE: cookie}, headers=headers
            )

        # A cookie write without the CSRF header, or with a forged one, is refused and changes nothing.
        refused = await put(token, {})
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
        forged = await put(token, {CSRF_HEADER: csrf_token(token, "not-the-server-secret-0123456789")})
        assert forged.status_code == 403
        other_session = issue(key_id, "alpha", SECRET, 3600, now=1)  # an old session's CSRF token
        assert (await put(token, {CSRF_HEADER: csrf_token(other_session, SECRET)})).status_code == 403
        assert (await http.get("/v1/scoring-settings", cookies={SESSION_COOKIE: token})).json()["settings"][
            "pass_mark"
        ] == 0.8
        assert (await put(token, {CSRF_HEADER: csrf})).status_code == 200

        # Forged, tampered and expired tokens are refused on reads too.
        forged_token = issue(key_id, "alpha", "not-the-server-secret-0123456789", 3600)
        tampered = [*issue(key_id, "beta", SECRET, 3600).split(".")[0:2], token.split(".")[2]]
        expired = issue(key_id, "alpha", SECRET, 60, now=1)
        for bad in (forged_token, ".".join(tampered), expired, "garbage"):
            http.cookies.clear()
            r = await http.get("/v1/scoring-settings", cookies={SESSION_COOKIE: bad})
            assert r.status_code == 401, bad

        # The console's origin may call with credentials; any other origin gets no CORS grant.
        pre = await http.options(
            "/v1/scoring-settings",
            headers={
                "Origin": CONSOLE,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-type,x-csrf-token",
            },
        )
        assert pre.headers.get("access-control-allow-origin") == CONSOLE
        assert pre.headers.get("access-control-allow-credentials") == "true"
        evil = await http.get("/v1/scoring-settings", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in evil.headers

        # Revoking the key on qa.tenants ends the session on its next request.
        await revoke_key(settings, "alpha", key_id)

        async def session_refused() -> bool:
            http.cookies.clear()
            r = await http.get("/v1/scoring-settings", cookies={SESSION_COOKIE: token})
            return r.status_code == 401

        await eventually(session_refused, within=30)
