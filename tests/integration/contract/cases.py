"""One case per service: a consumed topic, a valid event that has an effect, and how to count effects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from qastream_coaching.app import SPEC as COACHING
from qastream_ingest.app import SPEC as INGEST
from qastream_reporting.app import SPEC as REPORTING
from qastream_sampler.app import SPEC as SAMPLER
from qastream_scoring.app import SPEC as SCORING
from qastream_shared.events import (
    ConversationSampled,
    Envelope,
    InboundConversation,
    Purpose,
    Rating,
    ReviewKind,
    ReviewSubmitted,
    conversation_key,
    deterministic_id,
)
from qastream_shared.runtime import ServiceRuntime, ServiceSpec
from qastream_shared.testing import conversation, ingested
from qastream_shared.topics import CONVERSATIONS, INBOUND_CONVERSATIONS, REVIEWS, SAMPLES


@dataclass(frozen=True)
class ContractCase:
    spec: ServiceSpec
    topic: str
    # A valid event about conversation `cid` of `tenant` that the service turns into exactly one effect.
    event: Callable[[str, str], Envelope]
    # The number of effects stored for `tenant`.
    effects: Callable[[ServiceRuntime, str], Awaitable[int]]

    @property
    def id(self) -> str:
        return self.spec.name


def rows_of(table: str) -> Callable[[ServiceRuntime, str], Awaitable[int]]:
    async def count(runtime: ServiceRuntime, tenant: str) -> int:
        t = runtime.tables[table]
        async with runtime.sessions() as s:
            q = select(func.count()).select_from(t).where(t.c.tenant_id == tenant)
            return int((await s.execute(q)).scalar_one())

    return count


def inbound(tenant: str, cid: str) -> Envelope:
    conv = conversation(cid)
    return Envelope(
        data=InboundConversation.model_validate(conv.model_dump()),
        source="contract-test",
        tenant=tenant,
        key=conversation_key(tenant, cid),
        subject=cid,
    )


def sampled(tenant: str, cid: str) -> Envelope:
    return Envelope(
        data=ConversationSampled(
            conversation_id=cid,
            purpose=Purpose.auto,
            plan_id="auto",
            plan_version=1,
            inclusion_probability=1.0,
            reason="contract test",
            conversation=conversation(cid),
            sampled_at=datetime.now(UTC),
        ),
        source="contract-test",
        tenant=tenant,
        key=conversation_key(tenant, cid),
        subject=cid,
    )


def review(tenant: str, cid: str) -> Envelope:
    return Envelope(
        data=ReviewSubmitted(
            review_id=deterministic_id("contract-review", tenant, cid),
            conversation_id=cid,
            kind=ReviewKind.auto,
            scorecard_id="customer-service",
            scorecard_version=1,
            agent_id="agent-1",
            team="team-1",
            channel="chat",
            ratings=[Rating(category_id="greeting", value=1, score=1.0)],
            score=1.0,
            passed=True,
            submitted_at=datetime.now(UTC),
        ),
        source="contract-test",
        tenant=tenant,
        key=conversation_key(tenant, cid),
        subject=cid,
    )


CASES = [
    ContractCase(INGEST, INBOUND_CONVERSATIONS, inbound, rows_of("conversations")),
    ContractCase(SAMPLER, CONVERSATIONS, lambda t, cid: ingested(t, conversation(cid)), rows_of("inputs")),
    ContractCase(SCORING, SAMPLES, sampled, rows_of("reviews")),
    ContractCase(COACHING, REVIEWS, review, rows_of("reviews")),
    ContractCase(REPORTING, REVIEWS, review, rows_of("reviews")),
]
