"""What a late review or a revision takes back from the open tasks. Runs inside the caller's unit of work.

A firing is judged on the history at its event time, so a review that arrives late, or a revision, can undo
firings already applied. Which triggers can be undone, and by what:
- an IQS drop, by a late review or a revision: a mean moves either way;
- k failures in n days, by a revision only: a late review only adds failures, a revision can remove one;
- below the pass mark, an auto-fail, kudos: by a revision of that review only (they judge it alone);
- k rejected disputes: never (a rejection is not revised and a late one only adds).
For each agent concerned, every firing on its reviews from the start of the span a change can reach is judged
again, with the rules it can undo; an open task's evidence in that span that none of them cites any more is
withdrawn (a task left with none is dismissed as withdrawn), and a task whose opener no longer fires is
opened by the earliest firing for it that still does, as an event-time order would have done.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qastream_coaching import fact_store, task_store
from qastream_coaching.published import envelope, task_event, utc
from qastream_coaching.rules import Rule, Trigger
from qastream_coaching.task_updates import (
    event_id,
    firing_order,
    opener_key,
    opening,
    slot_of,
    uncategorised_slot,
    withdraw,
)
from qastream_coaching.triggers import (
    WEEK_S,
    AgentHistory,
    Firing,
    ReviewFact,
    RuleSet,
    evaluate_rejection,
    evaluate_review,
    longest_window_s,
)
from qastream_coaching.webhooks.outbound import Outbound
from qastream_shared.events import CoachingTaskEvidenceAdded
from qastream_shared.unit_of_work import UnitOfWork

REVISED = "no rule fires on its evidence any more once the revised reviews are counted"
ARRIVED_LATE = "the IQS drop no longer holds with the reviews that arrived after it was found"
# Whole-review triggers that fire with no category when the review has none (an IQS drop always).
UNCATEGORISED = frozenset({Trigger.below_pass_mark, Trigger.auto_fail, Trigger.iqs_drop})


def history_needed_s(rules: Sequence[Rule], revising: bool) -> float:
    """How far before a batch's earliest review its agents' history is read: as far as any rule looks back; with
    IQS drops three weeks, so the firings a late review may undo (a week before it) are judged on their full two
    weeks; with a revision twice the longest window, so every firing it may undo is."""
    longest = longest_window_s(rules)
    drops = any(r.trigger is Trigger.iqs_drop for r in rules)
    return max(longest, 3 * WEEK_S if drops else 0.0, 2 * longest if revising else 0.0)


@dataclass(frozen=True)
class Span:
    start: float  # the firings on the agent's reviews after this event time are judged again
    rules: RuleSet  # with these rules
    slots: frozenset[str] | None  # the agent's open tasks judged again (None: all)
    disputes: bool  # rejected disputes count too (their firings cite reviews)
    reason: str  # why a task left with no evidence is dismissed


def spans_of(
    facts: Sequence[ReviewFact], histories: dict[str, AgentHistory], rules: Sequence[Rule]
) -> dict[str, Span]:
    """agent → what to judge again, for the agents of the batch's stored `facts` a change may undo firings of:
    a revision (every trigger, the longest window before it), or, with IQS-drop rules, reviews not all later
    than the agent's stored ones (drops only, a week before the earliest)."""
    new = {f.review_id for f in facts}
    starts: dict[str, float] = {}
    revised: dict[str, float] = {}
    for f in facts:
        starts[f.agent_id] = min(starts.get(f.agent_id, f.at), f.at)
        if f.revision > 0:
            revised[f.agent_id] = min(revised.get(f.agent_id, f.at), f.at)
    every = RuleSet.of(rules)
    drops = any(r.trigger is Trigger.iqs_drop for r in every.whole)
    uncategorised = RuleSet.of(r for r in rules if r.trigger in UNCATEGORISED)
    longest = longest_window_s(rules)
    out: dict[str, Span] = {}
    for agent, start in starts.items():
        if agent in revised:
            out[agent] = Span(min(revised[agent] - longest, start - WEEK_S), every, None, True, REVISED)
        elif drops:
            h = histories[agent]
            if any(x.review_id not in new for x in h.facts[bisect_right(h.times, start) :]):
                slots = frozenset({uncategorised_slot(agent)})
                out[agent] = Span(start - WEEK_S, uncategorised, slots, False, ARRIVED_LATE)
    return out


async def recheck(
    uow: UnitOfWork,
    out: Outbound,
    tenant_id: str,
    spans: dict[str, Span],
    histories: dict[str, AgentHistory],
    rules: Sequence[Rule],
    cause: Sequence[str],
) -> None:
    """Withdraws the evidence of the spans' open tasks that no firing cites any more, and moves the opening of a
    task whose opener no longer fires to the earliest one that does. `cause` (the batch's reviews) makes the
    events' ids."""
    if not spans:
        return
    session = uow.session
    limited = {slot for span in spans.values() if span.slots for slot in span.slots}
    found = {
        slot: (task, ids)
        for slot, (task, ids) in (
            await task_store.open_evidence(
                session, tenant_id, slots=limited, agents=[a for a, s in spans.items() if s.slots is None]
            )
        ).items()
        if spans[task["agent_id"]].slots is None or slot in limited
    }
    # Only the agents with a task that a judgement may change are judged again: evidence or an opener in the span.
    at: dict[str, dict[str, float]] = {}
    concerned: set[str] = set()
    for task, ids in found.values():
        agent, start = task["agent_id"], spans[task["agent_id"]].start
        if agent not in at:
            at[agent] = {x.review_id: x.at for x in histories[agent].facts}
        if task["opened_at"].timestamp() > start or any(at[agent].get(r, start) > start for r in ids):
            concerned.add(agent)
    if not concerned:
        return
    disputed = sorted(a for a in concerned if spans[a].disputes)
    rejections = (
        await fact_store.rejections_of(
            session,
            tenant_id,
            disputed,
            utc(min(spans[a].start for a in disputed) - longest_window_s(rules)),
        )
        if disputed and any(r.trigger is Trigger.dispute_rejections for r in rules)
        else []
    )
    firings: dict[str, list[Firing]] = {}  # slot → the firings that still hold in its span
    for agent in concerned:
        h, span = histories[agent], spans[agent]
        held = [
            f for r in h.facts[bisect_right(h.times, span.start) :] for f in evaluate_review(r, h, span.rules)
        ]
        if span.disputes:
            mine = [r for r in rejections if r.agent_id == agent]
            held += [f for r in mine if r.at > span.start for f in evaluate_rejection(r, mine, rules, {})]
        for f in held:
            firings.setdefault(slot_of(f.agent_id, f.category_id, f.rule), []).append(f)
    gone: dict[str, list[str]] = {}
    reopened: dict[str, dict[str, Any]] = {}
    for slot, (task, ids) in found.items():
        agent = task["agent_id"]
        if agent not in concerned:
            continue
        start = spans[agent].start
        cited = {r for f in firings.get(slot, ()) for r in f.review_ids}
        lost = sorted(r for r in ids if at[agent].get(r, start) > start and r not in cited)
        if lost:
            gone[task["task_id"]] = lost
            if len(lost) == len(ids):  # dismissed: its opener does not matter
                continue
        if task["opened_at"].timestamp() > start:
            key = opener_key(task)
            after = [f for f in firings.get(slot, ()) if (f.at, f.rule.rule_id) >= key]
            if after and (first := min(after, key=firing_order)) and (first.at, first.rule.rule_id) != key:
                task.update(opening(first))
                reopened[task["task_id"]] = task
    await task_store.reopen_tasks(session, tenant_id, list(reopened.values()))
    for tid, task in sorted(reopened.items()):
        if tid not in gone:  # published as a takeover is; a withdrawal below carries the new opening itself
            event = task_event(CoachingTaskEvidenceAdded, task, [], added_review_ids=[])
            opened = ["opened-by", str(task["rule_id"]), str(task["opened_at"])]
            out.publish(envelope(tenant_id, task, event, event_id(task, "evidence", *opened)))
    if gone:
        await task_store.remove_evidence(session, tenant_id, gone)
        ids = ["recheck", *sorted(r for v in gone.values() for r in v), *cause]
        by_reason: dict[str, dict[str, list[str]]] = {}
        for task, _ in found.values():
            if task["task_id"] in gone:
                by_reason.setdefault(spans[task["agent_id"]].reason, {})[task["task_id"]] = gone[
                    task["task_id"]
                ]
        for reason, withdrawn in sorted(by_reason.items()):
            await withdraw(uow, out, tenant_id, withdrawn, reason, ids)
