"""The sampler's decision engine: pure functions over one tenant's `SamplerState`.

Replay determinism with several consumers. Events of one conversation share a partition, so everything
decided from one conversation's own facts (auto policy, random, targeted rules, late feedback) is a pure
function of that partition's order. Two things need facts from other partitions: per-agent/team quotas
(and the targeted fallback), and the `new_agent` rule (the agent's first conversation). Those are decided
only by `close`, in event time, once the watermark has passed, from sets that no interleaving can change:

* A conversation is *on time* when its event time + grace is not before the highest conversation event time
  seen earlier on its own partition (`partition_high`). That is a property of the partition's order alone.
  Only on-time conversations enter quota pools, fallback pools and the agents' first-seen dates.
* The watermark W is the minimum over all partitions of that per-partition high. Once W > t + grace, every
  on-time conversation with event time <= t has been observed (any later one would find its partition's
  high > t + grace and be late). So a slot ending at t closes on a complete, interleaving-free set, and
  picks the conversations with the smallest hash: bottom-k, a simple random sample without replacement.
* Feedback on a conversation still awaiting a close-time decision for a plan is *parked* and resolved at
  that close with a fixed precedence (new_agent, then fallback, then the first parked trigger); feedback
  after the close sees "already sampled" or triggers at once. Both orders give the same decision, and every
  decision carries event times only.

All functions mutate the given state in place and return the decisions they made, in a deterministic order.
The state's dicts are keyed like the tables that hold them (see `SamplerState`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from qastream_sampler.decisions import Decision, uniform
from qastream_sampler.plans import (
    AnyPlan,
    AutoFail,
    AutoPolicy,
    AutoScoreBelow,
    ChannelIs,
    CsatAtMost,
    Escalated,
    HandleTimeAbove,
    HasTag,
    NegativeSentiment,
    NewAgent,
    NpsDetractor,
    Period,
    RandomPlan,
    Reopened,
    Rule,
    Scope,
    StratifiedPlan,
    TargetedPlan,
)
from qastream_shared.conversation import Conversation
from qastream_shared.events import (
    ConversationIngested,
    ConversationUpdated,
    CsatRecorded,
    Purpose,
    ReviewKind,
    ReviewSubmitted,
)

_US = timedelta(microseconds=1)
SENTIMENT_SCORER = "sentiment"


@dataclass(frozen=True, slots=True)
class SamplerConfig:
    grace: timedelta = timedelta(hours=1)  # allowed disorder of conversation event times within a partition
    late_window: timedelta = timedelta(days=14)  # feedback later than this after the conversation is ignored


class UnknownConversation(LookupError):
    """Feedback or a review for a conversation the sampler never saw: the wiring dead-letters it."""


# --- state ------------------------------------------------------------------------------------


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def conversation_time(conversation: Conversation, ingested_at: datetime) -> datetime:
    """A conversation's event time: when it ended, else its last timestamp, else when it was ingested."""
    if conversation.ended_at is not None:
        return _utc(conversation.ended_at)
    last_ts = next((t.ts for t in reversed(conversation.turns) if t.ts), None)
    return _utc(last_ts or conversation.started_at or ingested_at)


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


# --- periods ----------------------------------------------------------------------------------


def period_bounds(t: datetime, period: Period) -> tuple[datetime, datetime, str]:
    """(start, end, label) of the UTC day, ISO week or calendar month containing t."""
    return _period_bounds(t.date(), period)


@lru_cache(maxsize=4096)
def _period_bounds(d: date, period: Period) -> tuple[datetime, datetime, str]:
    day = datetime(d.year, d.month, d.day, tzinfo=UTC)
    if period is Period.day:
        return day, day + timedelta(days=1), day.date().isoformat()
    if period is Period.week:
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return start, start + timedelta(days=7), f"{year}-W{week:02d}"
    start = day.replace(day=1)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end, f"{start.year}-{start.month:02d}"


# --- rules ------------------------------------------------------------------------------------


def in_scope(scope: Scope, facts: ConversationFacts) -> bool:
    if scope.channels is not None and facts.channel not in scope.channels:
        return False
    return scope.tags is None or not facts.tags.isdisjoint(scope.tags)


_MATCHERS: dict[type, Callable[[Any, ConversationFacts], bool]] = {
    CsatAtMost: lambda r, f: f.csat is not None and f.csat <= r.max,
    NpsDetractor: lambda r, f: f.nps is not None and f.nps <= 6,
    Escalated: lambda r, f: f.escalated,
    Reopened: lambda r, f: f.reopened,
    AutoScoreBelow: lambda r, f: f.auto_score is not None and f.auto_score < r.threshold,
    AutoFail: lambda r, f: f.auto_failed,
    NegativeSentiment: lambda r, f: f.sentiment is not None and f.sentiment < r.below,
    HandleTimeAbove: lambda r, f: f.handle_seconds is not None and f.handle_seconds > r.seconds,
    ChannelIs: lambda r, f: f.channel in r.channels,
    HasTag: lambda r, f: not f.tags.isdisjoint(r.tags),
    NewAgent: lambda r, f: False,  # needs other partitions' facts: decided by `close`
}


def rule_matches(rule: Rule, facts: ConversationFacts) -> bool:
    """Whether a rule holds on the facts known now. `new_agent` is decided by `close` instead."""
    return _MATCHERS[type(rule)](rule, facts)


def first_matching_rule(plan: TargetedPlan, facts: ConversationFacts) -> Rule | None:
    for rule in plan.rules:
        if _MATCHERS[type(rule)](rule, facts):
            return rule
    return None


def _stratum_value(by: str, facts: ConversationFacts) -> str | None:
    if by == "agent":
        return facts.agent_id
    if by == "team":
        return facts.team
    return "all"


# --- observe ----------------------------------------------------------------------------------


def observe_conversation(
    state: SamplerState,
    event: ConversationIngested,
    *,
    partition_high: datetime | None,
    config: SamplerConfig,
) -> list[Decision]:
    """Record a conversation and make every decision its own facts allow.

    `partition_high` is the highest conversation event time seen on this partition before this record (None
    for the first). A conversation seen twice is a no-op, so re-ingestion never samples twice.
    """
    conv = event.conversation
    if conv.conversation_id in state.conversations:
        return []
    t = conversation_time(conv, event.ingested_at)
    on_time = partition_high is None or t + config.grace >= _utc(partition_high)
    facts = ConversationFacts(
        conversation_id=conv.conversation_id,
        event_time=t,
        channel=conv.channel.value,
        agent_id=conv.agent_id,
        team=conv.team,
        tags=frozenset(conv.tags),
        handle_seconds=conv.handle_seconds(),
        on_time=on_time,
        csat=conv.csat,
        nps=conv.nps,
        escalated=conv.escalated,
        reopened=conv.reopened,
    )
    state.conversations[facts.conversation_id] = facts
    if on_time and facts.agent_id is not None:
        seen = state.agent_first_seen.get(facts.agent_id)
        if seen is None or t < seen:
            state.agent_first_seen[facts.agent_id] = t

    decisions: list[Decision] = []
    auto = _auto_decision(state, facts)
    if auto is not None:
        decisions.append(auto)
    for plan in state.active_plans():
        if not in_scope(plan.scope, facts):
            continue
        u = uniform(state.tenant_id, plan.plan_id, plan.version, facts.conversation_id, plan.seed)
        if isinstance(plan, RandomPlan):
            if u < plan.rate:
                decisions.append(
                    _manual(
                        plan, facts, None, None, plan.rate, t, f"random: hash {u:.6f} < rate {plan.rate:g}"
                    )
                )
        elif isinstance(plan, StratifiedPlan):
            value = _stratum_value(plan.by, facts)
            if on_time and value is not None:
                _pool_add(
                    state,
                    plan,
                    f"{plan.by.value}={value}",
                    plan.period,
                    "quota",
                    plan.quota,
                    plan.slots,
                    facts,
                    u,
                )
        else:
            decisions.extend(_targeted_at_ingest(state, plan, facts, u, config))
    for d in decisions:
        state.log[d.key] = d
    return decisions


def _auto_decision(state: SamplerState, facts: ConversationFacts) -> Decision | None:
    policy = state.auto_policy
    rate = policy.rate(facts.channel)
    if rate <= 0:
        return None
    u = uniform(state.tenant_id, policy.PLAN_ID, policy.version, facts.conversation_id, policy.seed)
    if u >= rate:
        return None
    reason = "auto policy: every conversation" if rate >= 1 else f"auto policy: hash {u:.6f} < rate {rate:g}"
    return Decision(
        conversation_id=facts.conversation_id,
        purpose=Purpose.auto,
        plan_id=policy.PLAN_ID,
        plan_version=policy.version,
        priority=0,
        stratum=f"channel={facts.channel}",
        rule=None,
        inclusion_probability=rate,
        reason=reason,
        decided_at=facts.event_time,
    )


def _manual(
    plan: AnyPlan,
    facts: ConversationFacts,
    stratum: str | None,
    rule: str | None,
    probability: float,
    at: datetime,
    reason: str,
    version: int | None = None,
) -> Decision:
    return Decision(
        conversation_id=facts.conversation_id,
        purpose=Purpose.manual,
        plan_id=plan.plan_id,
        plan_version=plan.version if version is None else version,
        priority=plan.priority,
        stratum=stratum,
        rule=rule,
        inclusion_probability=probability,
        reason=reason,
        decided_at=at,
    )


def _pool_add(
    state: SamplerState,
    plan: AnyPlan,
    stratum: str,
    period: Period,
    kind: Literal["quota", "fallback"],
    target: int,
    slots: int,
    facts: ConversationFacts,
    u: float,
    matched: bool = False,
) -> PoolKey:
    start, end, label = period_bounds(facts.event_time, period)
    key = PoolKey(plan.plan_id, plan.version, stratum, start)
    pool = state.pools.get(key)
    if pool is None:
        pool = state.pools[key] = Pool(
            kind=kind, period_label=label, period_end=end, slots=slots, target=target
        )
    pool.candidates[facts.conversation_id] = Candidate(
        facts.conversation_id, u, pool.slot_of(start, facts.event_time), matched=matched
    )
    return key


def _targeted_at_ingest(
    state: SamplerState, plan: TargetedPlan, facts: ConversationFacts, u: float, config: SamplerConfig
) -> list[Decision]:
    rule = first_matching_rule(plan, facts)
    fallback = plan.fallback if facts.on_time else None
    fb_value = _stratum_value(fallback.per, facts) if fallback is not None else None
    if rule is not None:
        if fallback is not None and fb_value is not None:
            _pool_add(state, plan, f"{fallback.per.value}={fb_value}", fallback.period, "fallback",
                      fallback.min_per_period, 1, facts, u, matched=True)  # fmt: skip
        if u < plan.rate:
            return [
                _manual(
                    plan, facts, None, rule.name, plan.rate, facts.event_time, _rule_reason(rule, u, plan)
                )
            ]
        return []
    new_agent = plan.new_agent_rule is not None and facts.on_time and facts.agent_id is not None
    pool = None
    if fallback is not None and fb_value is not None:
        pool = _pool_add(state, plan, f"{fallback.per.value}={fb_value}", fallback.period, "fallback",
                         fallback.min_per_period, 1, facts, u)  # fmt: skip
    if new_agent or pool is not None:
        due = facts.event_time + config.grace if new_agent else None
        state.pending[(facts.conversation_id, plan.plan_id)] = Pending(plan.version, due, pool)
    return []


def _rule_reason(rule: Rule, u: float, plan: TargetedPlan, late: str = "") -> str:
    head = f"targeted: {late}rule {rule.name} matched"
    return head if plan.rate >= 1 else f"{head}; hash {u:.6f} < rate {plan.rate:g}"


def _on_new_facts(
    state: SamplerState, facts: ConversationFacts, at: datetime, what: str, config: SamplerConfig
) -> list[Decision]:
    """Targeted plans re-evaluated after feedback, an update or an auto review, within the late window."""
    if at > facts.event_time + config.late_window:
        return []
    decisions: list[Decision] = []
    for plan in state.active_plans():
        if not isinstance(plan, TargetedPlan) or not in_scope(plan.scope, facts):
            continue
        if (facts.conversation_id, Purpose.manual, plan.plan_id) in state.log:
            continue
        rule = first_matching_rule(plan, facts)
        if rule is None:
            continue
        u = uniform(state.tenant_id, plan.plan_id, plan.version, facts.conversation_id, plan.seed)
        if u >= plan.rate:
            continue
        d = _manual(plan, facts, None, rule.name, plan.rate, at, _rule_reason(rule, u, plan, f"{what}: "))
        pending = state.pending.get((facts.conversation_id, plan.plan_id))
        if pending is not None:
            if pending.parked is None:  # the first trigger wins, in partition order
                pending.parked = d
            continue
        state.log[d.key] = d
        decisions.append(d)
    return decisions


def _facts_for(state: SamplerState, conversation_id: str) -> ConversationFacts:
    facts = state.conversations.get(conversation_id)
    if facts is None:
        raise UnknownConversation(
            f"conversation {conversation_id!r} unknown to the sampler of {state.tenant_id!r}"
        )
    return facts


def observe_csat(state: SamplerState, event: CsatRecorded, *, config: SamplerConfig) -> list[Decision]:
    facts = _facts_for(state, event.conversation_id)
    got = []
    if event.csat is not None:
        facts.csat = event.csat
        got.append(f"csat={event.csat}")
    if event.nps is not None:
        facts.nps = event.nps
        got.append(f"nps={event.nps}")
    return _on_new_facts(
        state, facts, _utc(event.recorded_at), "late " + ",".join(got or ["feedback"]), config
    )


def observe_update(
    state: SamplerState, event: ConversationUpdated, *, config: SamplerConfig
) -> list[Decision]:
    facts = _facts_for(state, event.conversation_id)
    got = []
    if event.escalated is not None:
        facts.escalated = event.escalated
        got.append(f"escalated={event.escalated}")
    if event.reopened is not None:
        facts.reopened = event.reopened
        got.append(f"reopened={event.reopened}")
    return _on_new_facts(state, facts, _utc(event.occurred_at), "update " + ",".join(got or ["-"]), config)


def observe_review(state: SamplerState, event: ReviewSubmitted, *, config: SamplerConfig) -> list[Decision]:
    """Auto reviews feed the AutoQA rules (score, auto-fail, sentiment); other reviews are ignored."""
    if event.kind is not ReviewKind.auto:
        return []
    facts = _facts_for(state, event.conversation_id)
    facts.auto_score = event.score
    facts.auto_failed = event.auto_failed
    facts.sentiment = next(
        (
            r.score
            for r in event.ratings
            if r.provenance is not None and r.provenance.scorer == SENTIMENT_SCORER
        ),
        None,
    )
    return _on_new_facts(state, facts, _utc(event.submitted_at), "auto review", config)


# --- close ------------------------------------------------------------------------------------


def close(state: SamplerState, watermark: datetime, *, config: SamplerConfig) -> list[Decision]:
    """Make every decision whose inputs are final at `watermark`, oldest first.

    Due jobs: a new-agent check at conversation time + grace, and each pool slot at its end + grace. They run
    in (due time, kind, id) order, so the decisions and their order depend only on the watermark's position.
    """
    w = _utc(watermark)
    if state.closed_to is not None and w <= state.closed_to:
        return []
    jobs: list[tuple[datetime, int, str, tuple[str, str] | PoolKey]] = []
    for pkey, pending in state.pending.items():
        if pending.new_agent_due is not None and pending.new_agent_due < w:
            jobs.append((pending.new_agent_due, 0, "|".join(pkey), pkey))
    for key, pool in state.pools.items():
        if (
            pool.closed_slots < pool.slots
            and pool.slot_end(key.period_start, pool.closed_slots) + config.grace < w
        ):
            jobs.append(
                (pool.slot_end(key.period_start, pool.closed_slots) + config.grace, 1, key.label(), key)
            )
    heapq.heapify(jobs)
    decisions: list[Decision] = []
    while jobs:
        _, kind, _, ref = heapq.heappop(jobs)
        if kind == 0:
            assert isinstance(ref, tuple) and not isinstance(ref, PoolKey)
            decisions.extend(_resolve_new_agent(state, ref))
            continue
        assert isinstance(ref, PoolKey)
        pool = state.pools[ref]
        decisions.extend(_close_slot(state, ref, pool))
        if pool.closed_slots < pool.slots:
            due = pool.slot_end(ref.period_start, pool.closed_slots) + config.grace
            if due < w:
                heapq.heappush(jobs, (due, 1, ref.label(), ref))
    state.closed_to = w
    return decisions


def _emit(state: SamplerState, d: Decision | None) -> list[Decision]:
    if d is None or d.key in state.log:
        return []
    state.log[d.key] = d
    return [d]


def _resolve_new_agent(state: SamplerState, pkey: tuple[str, str]) -> list[Decision]:
    conversation_id, plan_id = pkey
    pending = state.pending[pkey]
    pending.new_agent_due = None
    plan = state.plan_versions[(plan_id, pending.plan_version)]
    assert isinstance(plan, TargetedPlan) and plan.new_agent_rule is not None
    facts = state.conversations[conversation_id]
    assert facts.agent_id is not None
    first = state.agent_first_seen[facts.agent_id]
    days = plan.new_agent_rule.days
    if facts.event_time - first < timedelta(days=days):
        if pending.pool is not None:
            state.pools[pending.pool].candidates[conversation_id].matched = True
        del state.pending[pkey]
        u = uniform(state.tenant_id, plan.plan_id, plan.version, conversation_id, plan.seed)
        if u >= plan.rate:
            return _emit(state, pending.parked)
        reason = (
            _rule_reason(plan.new_agent_rule, u, plan)
            + f" (agent {facts.agent_id} first seen {first.date()})"
        )
        return _emit(
            state, _manual(plan, facts, None, plan.new_agent_rule.name, plan.rate, facts.event_time, reason)
        )
    if pending.pool is None:
        del state.pending[pkey]
        return _emit(state, pending.parked)
    return []


def _close_slot(state: SamplerState, key: PoolKey, pool: Pool) -> list[Decision]:
    j = pool.closed_slots
    pool.closed_slots += 1
    if pool.kind == "fallback":
        return _close_fallback(state, key, pool)
    plan = state.plan_versions[(key.plan_id, key.plan_version)]
    stratum = f"{key.stratum}|{pool.period_label}"
    last = j == pool.slots - 1
    in_slot = sorted(
        (c for c in pool.candidates.values() if c.slot == j), key=lambda c: (c.u, c.conversation_id)
    )
    need = pool.target * (j + 1) // pool.slots - sum(pool.slot_picks)
    picks = in_slot[: max(need, 0)]
    pool.slot_picks.append(len(picks))
    slot_end = pool.slot_end(key.period_start, j)
    out: list[Decision] = []
    slot_label = f"|slot {j + 1}/{pool.slots}" if pool.slots > 1 else ""
    for rank, c in enumerate(picks, 1):
        c.picked = True
        p = len(picks) / len(in_slot)
        reason = f"quota: rank {rank} of {len(in_slot)} by hash in {stratum}{slot_label}, {len(picks)} picked"
        out += _emit(state, _manual(plan, state.conversations[c.conversation_id], stratum + slot_label, None, p,
                                    slot_end, reason, key.plan_version))  # fmt: skip
    short = pool.target - sum(pool.slot_picks)
    if last and short > 0:
        out += _backfill(state, key, pool, plan, stratum, short)
    return out


def _backfill(
    state: SamplerState, key: PoolKey, pool: Pool, plan: AnyPlan, stratum: str, short: int
) -> list[Decision]:
    """The last slot fills the quota from every unpicked candidate of the period (only when slots > 1)."""
    rest = sorted(
        (c for c in pool.candidates.values() if not c.picked), key=lambda c: (c.u, c.conversation_id)
    )
    picks = rest[:short]
    sizes = [0] * pool.slots
    for c in pool.candidates.values():
        sizes[c.slot] += 1
    out: list[Decision] = []
    for rank, c in enumerate(picks, 1):
        c.picked = True
        f = pool.slot_picks[c.slot] / sizes[c.slot]
        p = f + (1 - f) * len(picks) / len(rest)
        reason = f"quota backfill: rank {rank} of {len(rest)} unpicked in {stratum}, {short} short"
        out += _emit(state, _manual(plan, state.conversations[c.conversation_id], stratum + "|backfill", None, p,
                                    pool.period_end, reason, key.plan_version))  # fmt: skip
    return out


def _close_fallback(state: SamplerState, key: PoolKey, pool: Pool) -> list[Decision]:
    plan = state.plan_versions[(key.plan_id, key.plan_version)]
    stratum = f"{key.stratum}|{pool.period_label}"
    matched = sum(c.matched for c in pool.candidates.values())
    drawable = sorted(
        (c for c in pool.candidates.values() if not c.matched), key=lambda c: (c.u, c.conversation_id)
    )
    picks = drawable[: max(pool.target - matched, 0)]
    out: list[Decision] = []
    for rank, c in enumerate(picks, 1):
        c.picked = True
        reason = (
            f"fallback: {matched} matches < minimum {pool.target} in {stratum}; "
            f"rank {rank} of {len(drawable)} unmatched by hash"
        )
        decision = _manual(plan, state.conversations[c.conversation_id], stratum, "fallback",
                           len(picks) / len(drawable), pool.period_end, reason, key.plan_version)  # fmt: skip
        state.pending.pop(
            (c.conversation_id, key.plan_id), None
        )  # a fallback pick supersedes parked triggers
        out += _emit(state, decision)
    for c in drawable[len(picks) :]:
        # new-agent checks fall due before the pool closes, so what is still pending waits only on this pool
        pending = state.pending.pop((c.conversation_id, key.plan_id), None)
        if pending is not None:
            out += _emit(state, pending.parked)
    return out
