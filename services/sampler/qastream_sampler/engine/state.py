"""One tenant's sampler state: the conversations' facts, quota and fallback pools, pending decisions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

from qastream_sampler.decisions import Decision
from qastream_sampler.plans import AnyPlan, AutoPolicy
from qastream_shared.events import Purpose

_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class SamplerConfig:
    grace: timedelta = timedelta(hours=1)  # allowed disorder of conversation event times within a partition
    late_window: timedelta = timedelta(days=14)  # feedback later than this after the conversation is ignored


class UnknownConversation(LookupError):
    """Feedback or a review for a conversation the sampler never saw: the wiring dead-letters it."""


def as_utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass(slots=True)
class ConversationFacts:
    """What the sampler keeps about one conversation (table row keyed by tenant, conversation_id)."""

    conversation_id: str
    event_time: datetime
    channel: str
    agent_id: str | None
    team: str | None
    tags: frozenset[str]
    handle_seconds: float | None
    on_time: bool
    csat: int | None = None
    nps: int | None = None
    escalated: bool = False
    reopened: bool = False
    auto_score: float | None = None
    auto_failed: bool = False
    sentiment: float | None = None
    p_dissatisfied: float | None = None  # pCSAT, from the auto review


class PoolKey(NamedTuple):
    plan_id: str
    plan_version: int
    stratum: str  # e.g. "agent=a17"
    period_start: datetime

    def label(self) -> str:
        return f"{self.plan_id}|v{self.plan_version}|{self.stratum}|{self.period_start.isoformat()}"


@dataclass(slots=True)
class Candidate:
    conversation_id: str
    u: float
    slot: int
    matched: bool = False  # fallback pools: matched a rule, so it counts toward M and is not drawn
    picked: bool = False


@dataclass(slots=True)
class Pool:
    """On-time candidates of one (plan version, stratum, period): a quota pool or a targeted plan's fallback."""

    kind: Literal["quota", "fallback"]
    period_label: str
    period_end: datetime
    slots: int
    target: int  # quota, or the fallback's min_per_period
    candidates: dict[str, Candidate] = field(default_factory=dict)
    closed_slots: int = 0
    slot_picks: list[int] = field(default_factory=list)  # picks made by each closed slot's own draw

    def slot_end(self, start: datetime, j: int) -> datetime:
        total = (self.period_end - start) // _US
        return start + _US * -(-total * (j + 1) // self.slots)  # ceiling, so every slot-j time is < end

    def slot_of(self, start: datetime, t: datetime) -> int:
        return ((t - start) // _US) * self.slots // ((self.period_end - start) // _US)


@dataclass(slots=True)
class Pending:
    """A (conversation, plan) whose decision waits for `close`; feedback triggers are parked meanwhile."""

    plan_version: int
    new_agent_due: datetime | None  # event time after which the agent's first-seen date is final
    pool: PoolKey | None  # the fallback pool the conversation is a candidate in
    parked: Decision | None = None


@dataclass(slots=True)
class SamplerState:
    """One tenant's sampler state. Each dict maps a table's primary key to its row."""

    tenant_id: str
    plans: dict[str, AnyPlan] = field(default_factory=dict)  # current version per plan_id
    plan_versions: dict[tuple[str, int], AnyPlan] = field(default_factory=dict)
    auto_policy: AutoPolicy = field(default_factory=AutoPolicy)
    conversations: dict[str, ConversationFacts] = field(default_factory=dict)
    log: dict[tuple[str, Purpose, str], Decision] = field(default_factory=dict)  # the sample log
    pools: dict[PoolKey, Pool] = field(default_factory=dict)
    pending: dict[tuple[str, str], Pending] = field(default_factory=dict)  # (conversation_id, plan_id)
    agent_first_seen: dict[str, datetime] = field(default_factory=dict)
    closed_to: datetime | None = None  # the watermark of the last close
    _active: list[AnyPlan] = field(default_factory=list, repr=False)  # derived from `plans`

    def put_plan(self, plan: AnyPlan) -> None:
        """Install a validated plan version (create, edit and pause all come through here)."""
        self.plans[plan.plan_id] = plan
        self.plan_versions[(plan.plan_id, plan.version)] = plan
        self._active = sorted(
            (p for p in self.plans.values() if not p.paused), key=lambda p: (p.priority, p.plan_id)
        )

    def active_plans(self) -> list[AnyPlan]:
        """Unpaused current plans in priority order."""
        return self._active


def watermark(partition_highs: Mapping[int, datetime], partitions: int) -> datetime | None:
    """Min over all partitions of the highest conversation event time seen; None until each has one."""
    if len(partition_highs) < partitions:
        return None
    return min(partition_highs.values())
