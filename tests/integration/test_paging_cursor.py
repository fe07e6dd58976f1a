"""A cursor is opaque, but a client can forge one: values of the wrong type for the sort key are a 422 naming
`cursor` (paging.decode_cursor), never a parameter PostgreSQL refuses with a 500."""

from __future__ import annotations

import base64
import json

import pytest

from qastream_shared.events import Role
from qastream_shared.settings import Settings
from qastream_shared.topics import ensure_topics
from tests.integration.review_workflow import in_process, issue_keys, wait_for_key

pytestmark = pytest.mark.integration


def forged(*values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


WRONG = [
    forged("yesterday", "r-1"),  # a string for a timestamp
    forged({"t": "2026-01-01T00:00:00+00:00"}, 7),  # a number for a text id
    forged(True, "r-1"),
    forged({"d": "2026-01-01"}, "r-1"),  # a date for a timestamp
    forged({"t": "2026-01-01T00:00:00+00:00"}, "r-\u0000"),  # NUL: PostgreSQL text cannot hold it
    forged({"t": "2026-01-01T00:00:00+00:00"}, ["r-1"]),
    forged({"t": 5}, "r-1"),
    forged(2**70, "r-1"),
]


async def test_forged_cursors_of_the_wrong_types_are_422_naming_cursor(settings: Settings) -> None:
    await ensure_topics(settings)
    keys = await issue_keys(settings, "acme", {"admin": (Role.admin, {"agent_id": "adm"})})
    async with in_process(settings) as http:
        admin = keys.auth("admin")
        await wait_for_key(http, admin)
        for path in ("/v1/reviews", "/v1/assignments"):
            for cursor in WRONG:
                r = await http.get(path, params={"cursor": cursor}, headers=admin)
                assert r.status_code == 422, (path, cursor, r.text)
                assert r.json()["detail"].startswith("cursor:"), r.text
            # Well-typed, it is served (from that point on): the check refuses types, not cursors.
            ok = await http.get(
                path, params={"cursor": forged({"t": "2026-01-01T00:00:00+00:00"}, "r-1")}, headers=admin
            )
            assert ok.status_code == 200, ok.text
