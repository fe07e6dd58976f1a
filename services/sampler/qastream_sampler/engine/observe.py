"""Observing events: a conversation, late feedback, an update or an auto review, and the decisions its own
facts allow at once (auto policy, random, targeted rules); the rest waits in pools and pending for `close`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from qastream_sampler.decisions import Decision, uniform
from qastream_sampler.engine.periods import period_bounds
from qastream_sampler.engine.rules import first_matching_rule, in_scope, stratum_value
from qastream_sampler.engine.state import (
    Candidate,
    ConversationFacts,
    Pending,
    Pool,
    PoolKey,
    SamplerConfig,
    SamplerState,
    UnknownConversation,
    as_utc,
)
from qastream_sampler.plans import AnyPlan, Period, RandomPlan, Rule, StratifiedPlan, TargetedPlan
from qastream_shared.events import (
    ConversationIngested,
    ConversationUpdated,
    CsatRecorded,
    Purpose,
    ReviewKind,
    ReviewSubmitted,
    conversation_time,
)

SENTIMENT_SCORER = "sentiment"


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
    on_time = partition_high is None or t + config.grace >= as_utc(partition_high)
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
                    manual_decision(
                        plan, facts, None, None, plan.rate, t, f"random: hash {u:.6f} < rate {plan.rate:g}"
                    )
                )
        elif isinstance(plan, StratifiedPlan):
            value = stratum_value(plan.by, facts)
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


def manual_decision(
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
    fb_value = stratum_value(fallback.per, facts) if fallback is not None else None
    if rule is not None:
        if fallback is not None and fb_value is not None:
            _pool_add(state, plan, f"{fallback.per.value}={fb_value}", fallback.period, "fallback",
                      fallback.min_per_period, 1, facts, u, matched=True)  # fmt: skip
        if u < plan.rate:
            return [
                manual_decision(
                    plan, facts, None, rule.name, plan.rate, facts.event_time, rule_reason(rule, u, plan)
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


def rule_reason(rule: Rule, u: float, plan: TargetedPlan, late: str = "") -> str:
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
        d = manual_decision(
            plan, facts, None, rule.name, plan.rate, at, rule_reason(rule, u, plan, f"{what}: ")
        )
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
        state, facts, as_utc(event.recorded_at), "late " + ",".join(got or ["feedback"]), config
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
    return _on_new_facts(state, facts, as_utc(event.occurred_at), "update " + ",".join(got or ["-"]), config)


def observe_review(state: SamplerState, event: ReviewSubmitted, *, config: SamplerConfig) -> list[Decision]:
    """Auto reviews feed the AutoQA rules (score, auto-fail, sentiment, pCSAT); other reviews are ignored."""
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
    facts.p_dissatisfied = event.pcsat.p_dissatisfied if event.pcsat is not None else None
    return _on_new_facts(state, facts, as_utc(event.submitted_at), "auto review", config)
