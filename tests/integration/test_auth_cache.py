"""The replica's cache of API key rows (auth.KeyCache) never outlives a revocation by more than its TTL, and
a revocation this replica applies itself (its tenant directory reading ApiKeyRevoked) is honoured at once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, update

from qastream_scoring.app import SPEC
from qastream_scoring.tables import tables
from qastream_shared.events import Role
from qastream_shared.keys import parse_key_id
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import eventually, revoke_key
from qastream_shared.topics import ensure_topics
from tests.integration.review_workflow import in_process, issue_keys, wait_for_key

pytestmark = pytest.mark.integration

PEOPLE = {"admin": (Role.admin, {"agent_id": "adm"}), "rev": (Role.reviewer, {"agent_id": "rev-1"})}


async def revoke_in_database(settings: Settings, key_id: str) -> None:
    """As another replica would see it: the row changes, no event reaches this process."""
    runtime = ServiceRuntime(SPEC, settings)
    keys = tables["api_keys"]
    try:
        async with runtime.sessions() as s, s.begin():
            await s.execute(update(keys).where(keys.c.key_id == key_id).values(revoked_at=func.now()))
    finally:
        await runtime.engine.dispose()


async def test_a_key_revoked_elsewhere_is_refused_within_the_ttl(settings: Settings) -> None:
    ttl = 2.0
    settings = settings.model_copy(update={"auth_cache_ttl_s": ttl})
    await ensure_topics(settings)
    keys = await issue_keys(settings, "acme", PEOPLE)
    async with in_process(settings) as http:
        await wait_for_key(http, keys.auth("rev"))  # the row is now in the cache
        await revoke_in_database(settings, parse_key_id(keys.keys["rev"]))
        revoked_at = time.monotonic()

        async def refused() -> bool:
            return (await http.get("/v1/scorecards", headers=keys.auth("rev"))).status_code == 401

        await eventually(refused, within=30)
        # Refused once the cached row expired (plus a busy machine's slack), not at some later time.
        assert time.monotonic() - revoked_at <= ttl + 2.0
        assert (await http.get("/v1/scorecards", headers=keys.auth("rev"))).status_code == 401
        assert (await http.get("/v1/scorecards", headers=keys.auth("admin"))).status_code == 200


async def test_a_revocation_on_qa_tenants_is_honoured_at_once_despite_a_long_ttl(settings: Settings) -> None:
    settings = settings.model_copy(update={"auth_cache_ttl_s": 60.0})
    await ensure_topics(settings)
    keys = await issue_keys(settings, "acme", PEOPLE)
    async with in_process(settings) as http:
        await wait_for_key(http, keys.auth("rev"))
        key_id = parse_key_id(keys.keys["rev"])
        revoked_at = time.monotonic()
        await revoke_key(settings, "acme", key_id)

        async def refused() -> bool:
            return (await http.get("/v1/scorecards", headers=keys.auth("rev"))).status_code == 401

        await eventually(refused, within=50)
        # Well inside the 60 s the cached row would otherwise be trusted.
        assert time.monotonic() - revoked_at < 50
        assert (await http.get("/v1/scorecards", headers=keys.auth("admin"))).status_code == 200
