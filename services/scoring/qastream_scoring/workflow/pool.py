"""Which reviewer gets a manual sample: a weighted, deterministic split with quotas.

Each eligible reviewer draws a key from a stable hash of (tenant, conversation, reviewer):
key = −ln(u)/weight with u uniform in (0, 1). Sorting by key is weighted rendezvous hashing: the first
reviewer is reviewer r with probability weight_r / Σ weights, the order depends on nothing but those
inputs, and adding or removing one reviewer moves only the samples that reviewer wins or loses. The
sample goes to the first reviewer in that order with quota left in the sample's day and ISO week;
when nobody has, it waits in the tenant's unassigned pool for `GET /v1/assignments/next`.

Eligible: not one of the conversation's agents (no one reviews their own work), and, when the tenant
asks for it, not the lead of the conversation's team.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ConfigDict, Field, model_validator

from qastream_events.json_input import JsonInput
from qastream_shared.api_contract import NO_NUL


class Reviewer(JsonInput):
    model_config = ConfigDict(extra="forbid")

    # No NUL: PostgreSQL cannot store one (a 422 naming the field, not a 500).
    reviewer_id: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    weight: int = Field(default=1, ge=0, le=1000, description="0 pauses the reviewer")
    daily_quota: int | None = Field(default=None, ge=0, le=100_000)
    weekly_quota: int | None = Field(default=None, ge=0, le=1_000_000)
    leads_team: str | None = Field(
        default=None, max_length=200, pattern=NO_NUL, description="the team this reviewer leads"
    )


class ReviewerPool(JsonInput):
    """A tenant's reviewers and its review options."""

    model_config = ConfigDict(extra="forbid")

    reviewers: list[Reviewer] = Field(default_factory=list, max_length=10_000)
    blind: bool = Field(default=False, description="hide the agent's identity from reviewers")
    skip_team_lead: bool = Field(default=False, description="never assign to the lead of the agent's team")

    @model_validator(mode="after")
    def _unique(self) -> ReviewerPool:
        seen: set[str] = set()
        for r in self.reviewers:
            if r.reviewer_id in seen:
                raise ValueError(f"reviewers: {r.reviewer_id!r} is listed twice")
            seen.add(r.reviewer_id)
        return self

    def lead_of(self, reviewer_id: str) -> str | None:
        return next((r.leads_team for r in self.reviewers if r.reviewer_id == reviewer_id), None)


@dataclass(frozen=True, slots=True)
class Load:
    """What a reviewer already holds in the sample's quota periods."""

    day: int = 0
    week: int = 0


def period_day(at: datetime) -> datetime:
    """The UTC day a sample counts in."""
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, at.day, tzinfo=UTC)


def week_start(day: datetime) -> datetime:
    return day - timedelta(days=day.weekday())


def eligible(pool: ReviewerPool, agent_ids: Sequence[str], team: str | None) -> list[Reviewer]:
    return [
        r
        for r in pool.reviewers
        if r.weight > 0
        and r.reviewer_id not in agent_ids
        and not (pool.skip_team_lead and team is not None and r.leads_team == team)
    ]


def may_review(pool: ReviewerPool, reviewer_id: str, agent_ids: Sequence[str], team: str | None) -> bool:
    """The eligibility rule for one reviewer (also for reviewers outside the pool, e.g. a reassignment)."""
    if reviewer_id in agent_ids:
        return False
    return not (pool.skip_team_lead and team is not None and pool.lead_of(reviewer_id) == team)


def _key(tenant_id: str, conversation_id: str, reviewer: Reviewer) -> float:
    digest = hashlib.blake2b(
        f"{tenant_id}|{conversation_id}|{reviewer.reviewer_id}".encode(), digest_size=8
    ).digest()
    u = (int.from_bytes(digest, "big") + 0.5) / 2**64
    return -math.log(u) / reviewer.weight


def preference(
    pool: ReviewerPool, tenant_id: str, conversation_id: str, agent_ids: Sequence[str], team: str | None
) -> list[Reviewer]:
    """The eligible reviewers in the order this conversation offers itself to them."""
    return sorted(
        eligible(pool, agent_ids, team),
        key=lambda r: (_key(tenant_id, conversation_id, r), r.reviewer_id),
    )


def choose(order: Sequence[Reviewer], load: Mapping[str, Load]) -> str | None:
    """The first reviewer in `order` with quota left, or None (the unassigned pool)."""
    for r in order:
        held = load.get(r.reviewer_id, Load())
        if r.daily_quota is not None and held.day >= r.daily_quota:
            continue
        if r.weekly_quota is not None and held.week >= r.weekly_quota:
            continue
        return r.reviewer_id
    return None
