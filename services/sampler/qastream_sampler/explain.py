"""Why a conversation was or was not picked, plan by plan (the API and `qa samples explain`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from qastream_sampler.decisions import uniform
from qastream_sampler.engine import (
    ConversationFacts,
    SamplerState,
    UnknownConversation,
    in_scope,
    rule_matches,
)
from qastream_sampler.plans import AnyPlan, NewAgent, RandomPlan, StratifiedPlan, TargetedPlan
from qastream_shared.events import Purpose

Detail = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class PlanExplanation:
    plan_id: str
    plan_version: int
    kind: str  # auto_policy | random | stratified | targeted
    purpose: Purpose
    picked: bool
    reason: str
    details: dict[str, Detail] = field(default_factory=dict)


def explain(state: SamplerState, conversation_id: str) -> list[PlanExplanation]:
    """The auto policy first, then every plan in priority order, each with its verdict and the numbers behind it."""
    facts = state.conversations.get(conversation_id)
    if facts is None:
        raise UnknownConversation(
            f"conversation {conversation_id!r} unknown to the sampler of {state.tenant_id!r}"
        )
    out = [_explain_auto(state, facts)]
    for plan in sorted(state.plans.values(), key=lambda p: (p.priority, p.plan_id)):
        out.append(_explain_plan(state, plan, facts))
    return out


def _explain_auto(state: SamplerState, facts: ConversationFacts) -> PlanExplanation:
    policy = state.auto_policy
    decision = state.log.get((facts.conversation_id, Purpose.auto, policy.PLAN_ID))
    rate = policy.rate(facts.channel)
    u = uniform(state.tenant_id, policy.PLAN_ID, policy.version, facts.conversation_id, policy.seed)
    reason = (
        decision.reason if decision else f"auto policy: hash {u:.6f} >= rate {rate:g} for {facts.channel}"
    )
    return PlanExplanation(
        policy.PLAN_ID, policy.version, "auto_policy", Purpose.auto, decision is not None, reason,
        {"hash": u, "threshold": rate, "channel": facts.channel},
    )  # fmt: skip


def _explain_plan(state: SamplerState, plan: AnyPlan, facts: ConversationFacts) -> PlanExplanation:
    decision = state.log.get((facts.conversation_id, Purpose.manual, plan.plan_id))
    version = decision.plan_version if decision else plan.version
    u = uniform(state.tenant_id, plan.plan_id, version, facts.conversation_id, plan.seed)
    details: dict[str, Detail] = {"hash": u, "priority": plan.priority, "on_time": facts.on_time}

    def verdict(picked: bool, reason: str) -> PlanExplanation:
        return PlanExplanation(plan.plan_id, version, plan.kind, Purpose.manual, picked, reason, details)

    if decision is not None:
        details.update(
            stratum=decision.stratum, rule=decision.rule, probability=decision.inclusion_probability
        )
        return verdict(True, decision.reason)
    if plan.paused:
        return verdict(False, "plan is paused")
    if not in_scope(plan.scope, facts):
        return verdict(False, f"out of scope (channel {facts.channel}, tags {sorted(facts.tags)})")
    if isinstance(plan, RandomPlan):
        details["threshold"] = plan.rate
        return verdict(False, f"random: hash {u:.6f} >= rate {plan.rate:g}")
    quota = _quota_status(state, plan.plan_id, facts.conversation_id, details)
    if isinstance(plan, StratifiedPlan):
        if not facts.on_time:
            return verdict(
                False, "arrived after its partition moved past its event time + grace: not in quotas"
            )
        return verdict(False, quota or f"no {plan.by} on the conversation: not in any stratum")
    return verdict(False, _explain_targeted(state, plan, facts, u, details, quota))


def _explain_targeted(
    state: SamplerState,
    plan: TargetedPlan,
    facts: ConversationFacts,
    u: float,
    details: dict[str, Detail],
    quota: str | None,
) -> str:
    parts = []
    for rule in plan.rules:
        if isinstance(rule, NewAgent):
            first = state.agent_first_seen.get(facts.agent_id or "")
            parts.append(f"{rule.name}: agent first seen {first.date() if first else 'never'}")
        else:
            parts.append(f"{rule.name}: {'matched' if rule_matches(rule, facts) else 'no'}")
    details["threshold"] = plan.rate
    pending = state.pending.get((facts.conversation_id, plan.plan_id))
    status = "waiting for the watermark" if pending else "no rule matched"
    if any(rule_matches(r, facts) for r in plan.rules) and u >= plan.rate:
        status = f"matched but hash {u:.6f} >= rate {plan.rate:g}"
    return f"targeted: {status} ({'; '.join(parts)})" + (f"; fallback: {quota}" if quota else "")


def _quota_status(
    state: SamplerState, plan_id: str, conversation_id: str, details: dict[str, Detail]
) -> str | None:
    for key, pool in state.pools.items():
        cand = pool.candidates.get(conversation_id) if key.plan_id == plan_id else None
        if cand is None:
            continue
        peers = sorted(
            (c for c in pool.candidates.values() if c.slot == cand.slot and not c.matched),
            key=lambda c: (c.u, c.conversation_id),
        )
        rank = peers.index(cand) + 1 if not cand.matched else None
        closed = pool.closed_slots > cand.slot
        details.update(stratum=f"{key.stratum}|{pool.period_label}", slot=cand.slot + 1, slots=pool.slots,
                       slot_closed=closed, rank=rank, slot_size=len(peers), target=pool.target)  # fmt: skip
        if cand.matched:
            return "counted as a match toward the fallback minimum"
        if not closed:
            return f"slot {cand.slot + 1}/{pool.slots} of {pool.period_label} still open: rank {rank} of {len(peers)}"
        return f"not picked: rank {rank} of {len(peers)} by hash in {key.stratum}|{pool.period_label}, quota reached"
    return None
