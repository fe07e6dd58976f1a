"""Shared set-up for the review workflow's integration tests: keys per role, manual samples, a live app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from qastream_scoring.app import build
from qastream_shared.conversation import Conversation
from qastream_shared.events import (
    ConversationSampled,
    Envelope,
    Purpose,
    Role,
    conversation_key,
)
from qastream_shared.settings import Settings
from qastream_shared.testing import eventually, produce_envelopes, publish_tenant_keys
from qastream_shared.topics import SAMPLES, physical


@dataclass
class Keys:
    """One tenant's API keys by name ('admin', 'rev-1', ...)."""

    tenant: str
    keys: dict[str, str] = field(default_factory=dict)

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


async def issue_keys(settings: Settings, tenant: str, people: dict[str, tuple[Role, dict[str, str]]]) -> Keys:
    """The tenant and one key per person: name → (role, agent_id/team fields)."""
    issued = await publish_tenant_keys(settings, tenant, list(people.values()))
    return Keys(tenant, {name: i.key for name, i in zip(people, issued, strict=True)})


def sample(tenant: str, conv: Conversation, purpose: Purpose, at: datetime | None = None) -> Envelope:
    return Envelope(
        data=ConversationSampled(
            conversation_id=conv.conversation_id,
            purpose=purpose,
            plan_id="manual-plan" if purpose is Purpose.manual else "auto-policy",
            plan_version=1,
            inclusion_probability=0.5 if purpose is Purpose.manual else 1.0,
            reason=f"{purpose.value} sample",
            conversation=conv,
            sampled_at=at or datetime.now(UTC),
        ),
        source="sampler",
        tenant=tenant,
        key=conversation_key(tenant, conv.conversation_id),
    )


async def produce_samples(settings: Settings, envs: list[Envelope]) -> None:
    await produce_envelopes(settings, physical(SAMPLES, settings), envs)


async def wait_for_key(http: httpx.AsyncClient, headers: dict[str, str], within: float = 60) -> None:
    """Until the key is known (the tenant directory has read it) and the service answers."""

    async def known() -> bool:
        try:
            r = await http.get("/v1/scorecards", headers=headers)
        except httpx.TransportError:
            return False
        return r.status_code == 200

    await eventually(known, within=within)


@contextlib.asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The scoring app in this process (consumer, relay and directory running), over ASGI."""
    app = build(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://scoring", timeout=30) as http:
            yield http


def items(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    return list(body["items"])
