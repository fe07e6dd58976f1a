"""Closing: the decisions that need every partition's facts (quotas, backfill, targeted fallback,
new agents), made once the watermark has passed, in due-time order."""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta

from qastream_sampler.decisions import Decision, uniform
from qastream_sampler.engine.observe import manual_decision, rule_reason
from qastream_sampler.engine.state import Pool, PoolKey, SamplerConfig, SamplerState, as_utc
from qastream_sampler.plans import AnyPlan, TargetedPlan


def close(state: SamplerState, watermark: datetime, *, config: SamplerConfig) -> list[Decision]:
    """Make every decision whose inputs are final at `watermark`, oldest first.

    Due jobs: a new-agent check at conversation time + grace, and each pool slot at its end + grace. They run
    in (due time, kind, id) order, so the decisions and their order depend only on the watermark's position.
    """
    w = as_utc(watermark)
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
            rule_reason(plan.new_agent_rule, u, plan) + f" (agent {facts.agent_id} first seen {first.date()})"
        )
        return _emit(
            state,
            manual_decision(plan, facts, None, plan.new_agent_rule.name, plan.rate, facts.event_time, reason),
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
        out += _emit(state, manual_decision(plan, state.conversations[c.conversation_id], stratum + slot_label, None, p,
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
        out += _emit(state, manual_decision(plan, state.conversations[c.conversation_id], stratum + "|backfill", None, p,
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
        decision = manual_decision(plan, state.conversations[c.conversation_id], stratum, "fallback",
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
