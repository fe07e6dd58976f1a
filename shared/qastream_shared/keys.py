"""API keys: `qa_<key_id>_<secret>`. Only an HMAC of the whole key is stored; the key id finds the row."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "qa"
_KEY_ID_BYTES = 8
_SECRET_BYTES = 32
# token_urlsafe(32) gives 43 characters of [A-Za-z0-9_-]; the id is hex, so the first two "_" split it.
_KEY = re.compile(rf"{KEY_PREFIX}_([0-9a-f]{{{2 * _KEY_ID_BYTES}}})_([A-Za-z0-9_-]{{43}})")


class InvalidApiKey(ValueError):
    """A presented key that is not of our shape; the message never repeats the key."""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    key: str  # shown to the caller once, never stored
    key_hash: str


def hash_key(key: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


def generate_key(pepper: str) -> IssuedKey:
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return IssuedKey(key_id=key_id, key=key, key_hash=hash_key(key, pepper))


def parse_key_id(key: str) -> str:
    """The key id of a presented key, to look up its stored hash; InvalidApiKey if it is malformed."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise InvalidApiKey("malformed API key")
    return match.group(1)


def verify_key(key: str, key_hash: str, pepper: str) -> bool:
    """Whether `key` hashes to `key_hash`, compared in constant time."""
    return hmac.compare_digest(hash_key(key, pepper), key_hash)
