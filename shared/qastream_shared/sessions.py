"""Browser sessions: an API key exchanged for a signed, expiring token that every service's auth accepts.

The token is `v1.<payload>.<signature>`: the payload names the key id, its tenant and the expiry, and the
signature is an HMAC-SHA256 under QA_SESSION_SECRET, which every service shares. It carries no role: the
shared auth re-reads the key row on every request, so revoking the key through qa.tenants ends its
sessions exactly as it ends the key, and a role change can never be frozen into a token.

Writes made with the session cookie need a CSRF token in the `X-CSRF-Token` header. That token is an HMAC
of the session token under the same secret (a signed double submit): the page reads it from the
`qa_csrf` cookie, which another site can neither read nor compute. Callers that present an API key in a
header are unaffected: a browser never attaches one on its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass

import orjson

SESSION_COOKIE = "qa_session"
CSRF_COOKIE = "qa_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_VERSION = "v1"


class InvalidSession(ValueError):
    """A session token that is malformed, forged, tampered with or expired; the message says which."""


@dataclass(frozen=True, slots=True)
class SessionClaims:
    key_id: str
    tenant_id: str
    expires_at: int  # unix seconds


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: bytes, message: bytes) -> bytes:
    # The purpose separates session signatures from CSRF tokens made with the same secret.
    return hmac.new(secret.encode(), purpose + b"|" + message, hashlib.sha256).digest()


def issue(key_id: str, tenant_id: str, secret: str, ttl_s: int, *, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + ttl_s)
    payload = _b64(orjson.dumps({"k": key_id, "t": tenant_id, "exp": expires}))
    signed = f"{_VERSION}.{payload}"
    return f"{signed}.{_b64(_mac(secret, b'session', signed.encode()))}"


def verify(token: str, secret: str, *, now: float | None = None) -> SessionClaims:
    """The claims of a token this deployment signed and that has not expired; InvalidSession otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _VERSION:
        raise InvalidSession("malformed session token")
    signed = f"{parts[0]}.{parts[1]}"
    try:
        signature = _unb64(parts[2])
        claims = orjson.loads(_unb64(parts[1]))
    except (binascii.Error, ValueError):
        raise InvalidSession("malformed session token") from None
    if not hmac.compare_digest(signature, _mac(secret, b"session", signed.encode())):
        raise InvalidSession("session token signature does not match")
    if not (
        isinstance(claims, dict)
        and isinstance(claims.get("k"), str)
        and isinstance(claims.get("t"), str)
        and isinstance(claims.get("exp"), int)
    ):
        raise InvalidSession("malformed session token")
    if claims["exp"] <= (time.time() if now is None else now):
        raise InvalidSession("session expired: sign in again")
    return SessionClaims(claims["k"], claims["t"], claims["exp"])


def csrf_token(token: str, secret: str) -> str:
    return _b64(_mac(secret, b"csrf", token.encode()))


def csrf_ok(token: str, presented: str | None, secret: str) -> bool:
    return presented is not None and hmac.compare_digest(
        presented.encode(), csrf_token(token, secret).encode()
    )
