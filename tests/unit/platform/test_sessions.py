"""Session tokens: only what this deployment signed, unexpired and untouched, is accepted."""

from __future__ import annotations

import base64

import orjson
import pytest

from qastream_shared.sessions import InvalidSession, csrf_ok, csrf_token, issue, verify

SECRET = "s" * 40
NOW = 1_800_000_000.0


def test_an_issued_token_verifies_to_its_key_tenant_and_expiry() -> None:
    token = issue("0123456789abcdef", "acme", SECRET, 3600, now=NOW)
    claims = verify(token, SECRET, now=NOW + 10)
    assert (claims.key_id, claims.tenant_id, claims.expires_at) == ("0123456789abcdef", "acme", NOW + 3600)


def test_an_expired_token_is_refused() -> None:
    token = issue("0123456789abcdef", "acme", SECRET, 60, now=NOW)
    with pytest.raises(InvalidSession, match="expired"):
        verify(token, SECRET, now=NOW + 60)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    forged = issue("0123456789abcdef", "acme", "another secret of enough length!!", 3600, now=NOW)
    with pytest.raises(InvalidSession, match="signature"):
        verify(forged, SECRET, now=NOW)


def _swap_payload(token: str, **changes: object) -> str:
    version, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    tampered = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    return f"{version}.{tampered}.{signature}"


@pytest.mark.parametrize("change", [{"t": "other-tenant"}, {"k": "fedcba9876543210"}, {"exp": NOW + 10**6}])
def test_a_tampered_payload_is_refused(change: dict[str, object]) -> None:
    token = issue("0123456789abcdef", "acme", SECRET, 3600, now=NOW)
    with pytest.raises(InvalidSession, match="signature"):
        verify(_swap_payload(token, **change), SECRET, now=NOW)


@pytest.mark.parametrize("junk", ["", "v1", "v1.x.y", "v2.a.b", "v1.!!!.???", "a.b.c.d"])
def test_malformed_tokens_are_refused(junk: str) -> None:
    with pytest.raises(InvalidSession):
        verify(junk, SECRET, now=NOW)


def test_the_csrf_token_belongs_to_one_session() -> None:
    one = issue("0123456789abcdef", "acme", SECRET, 3600, now=NOW)
    two = issue("0123456789abcdef", "acme", SECRET, 3600, now=NOW + 1)
    assert csrf_ok(one, csrf_token(one, SECRET), SECRET)
    assert not csrf_ok(one, csrf_token(two, SECRET), SECRET)
    assert not csrf_ok(one, csrf_token(one, "another secret of enough length!!"), SECRET)
    assert not csrf_ok(one, None, SECRET)
    assert not csrf_ok(one, "", SECRET)
