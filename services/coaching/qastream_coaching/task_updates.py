"""Tasks from rule firings: a slot's task, opened by its earliest firing in event time; evidence added to it;
evidence withdrawn when what fired no longer does (see recheck.py). Runs inside the caller's unit of work and
publishes every change through `Outbound`, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Table

from qastream_coaching import fact_store, task_store
from qastream_coaching.config_cache import ConfigCache
from qastream_coaching.known_evidence import KnownEvidence
from qastream_coaching.published import envelope, task_event, utc
from qastream_coaching.rules import POSITIVE, Rule
from qastream_coaching.triggers import Firing
from qastream_coaching.webhooks.outbound import Outbound
from qastream_shared.events import (
    CoachingTaskConfirmed,
    CoachingTaskCreated,
    CoachingTaskDismissed,
    CoachingTaskEvent,
    CoachingTaskEvidenceAdded,
    CoachingTaskEvidenceWithdrawn,
    CoachingTaskStatus,
    deterministic_id,
)
from qastream_shared.unit_of_work import UnitOfWork

MAX_QUOTES = 3


def slot_of(agent_id: str, category_id: str | None, rule: Rule) -> str:
    """One open task per agent, category and polarity: new evidence for it joins that task."""
    polarity = "kudos" if rule.trigger in POSITIVE else "coaching"
    return f"{agent_id}\x1f{category_id or ''}\x1f{polarity}"


def uncategorised_slot(agent_id: str) -> str:
    """The slot of an agent's coaching firings that name no category (IQS drops, mostly)."""
    return f"{agent_id}\x1f\x1fcoaching"


def task_id_of(tenant_id: str, slot: str, episode: int) -> str:
    """Deterministic: the slot's n-th task (n = tasks already closed in it, the withdrawn left out) has the same
    id in any replay and whatever order the reviews arrived in."""
    return deterministic_id("coaching-task", tenant_id, slot, str(episode))


def event_id(task: Mapping[str, Any], *cause: str) -> str:
    """The id of an event coaching publishes about a task on its own: the same for the same cause, and new in
    each generation of a task id taken up again after a withdrawal (consumers would drop a repeated id)."""
    generation = task.get("generation") or 0
    return deterministic_id("coaching", task["task_id"], *([f"g{generation}"] if generation else []), *cause)


def needs_confirmation(f: Firing) -> bool:
    """Whether `f` alone would leave its task waiting for a lead. A task waits only while every firing that joined
    it does: a conjunction, so the same whatever order they arrived in (a human review clears it, whether it
    opened the task, took it over or joined it, and nothing sets it again)."""
    return f.rule.requires_confirmation and f.auto_only


def firing_order(f: Firing) -> tuple[float, str, str]:
    """Which firing opens a slot's task: the earliest in event time, then the lowest rule id (a stable choice
    between rules firing on the same review), whatever order they arrived in."""
    return (f.at, f.rule.rule_id, f.cause_id)


def opening(f: Firing) -> dict[str, Any]:
    """What the firing that opens a task decides about it."""
    return {
        "rule_id": f.rule.rule_id,
        "rule_version": f.rule.version,
        "title": f.rule.title,
        "opened_at": utc(f.at),
        "due_at": utc(f.at) + timedelta(days=f.rule.due_days),
        "impact_reviews": f.rule.impact_reviews,
    }


def opener_key(task: Mapping[str, Any]) -> tuple[float, str]:
    """Where the task's opener stands in `firing_order` (cause left out: the opening does not depend on it)."""
    return (task["opened_at"].timestamp(), task["rule_id"])


async def apply_firings(
    uow: UnitOfWork,
    out: Outbound,
    tenant_id: str,
    firings: Sequence[Firing],
    api_keys: Table,
    cache: ConfigCache,
    details: dict[str, dict[str, Any]],
    known: KnownEvidence,
) -> None:
    """Opens a task per slot without one, or adds the evidence to the slot's open task; publishes both. A firing
    earlier than the one that opened its slot's task (a review that arrived late) becomes the task's opener, so
    the task's rule, title and dates are those an event-time order would have given. Evidence `known` to be
    stored already is not sent again."""
    if not firings:
        return
    session = uow.session
    firings = sorted(firings, key=firing_order)
    slots = {slot_of(f.agent_id, f.category_id, f.rule) for f in firings}
    found = await task_store.slot_tasks(session, tenant_id, slots)
    open_ = found.open
    # Only tasks about to open need their team's lead.
    new_teams = {f.team for f in firings if slot_of(f.agent_id, f.category_id, f.rule) not in open_}
    leads = await cache.team_leads(session, api_keys, tenant_id, new_teams)
    missing = {r for f in firings for r in f.review_ids} - set(details)
    details = {**details, **await fact_store.review_details(session, tenant_id, missing)}
    created: dict[str, tuple[dict[str, Any], Firing]] = {}
    reopened: dict[str, dict[str, Any]] = {}
    waits: dict[str, bool] = {}  # slot → whether every firing of the batch for it leaves its task waiting
    evidence_rows: dict[tuple[str, str], dict[str, Any]] = {}
    stored: dict[str, frozenset[str] | set[str]] = {
        t["task_id"]: known.of(t["task_id"], t["evidence_seq"]) for t in open_.values()
    }
    for f in firings:
        slot = slot_of(f.agent_id, f.category_id, f.rule)
        waits[slot] = waits.get(slot, True) and needs_confirmation(f)
        task = open_.get(slot)
        if task is None:
            task_id = task_id_of(tenant_id, slot, found.closed.get(slot, 0))
            withdrawn = found.withdrawn.get(task_id)
            task = {
                "task_id": task_id,
                "tenant_id": tenant_id,
                "slot": slot,
                **opening(f),
                "agent_id": f.agent_id,
                "team": f.team,
                "assignee_id": leads.get(f.team or ""),
                "category_id": f.category_id,
                "status": CoachingTaskStatus.open.value,
                "needs_confirmation": needs_confirmation(f),
                "generation": withdrawn["generation"] + 1 if withdrawn else 0,
            }
            created[task["task_id"]] = (task, f)
            open_[slot] = task
        elif task["task_id"] not in created and (f.at, f.rule.rule_id) < opener_key(task):
            task.update(opening(f))
            reopened[task["task_id"]] = task
        at = None
        already = stored.get(task["task_id"], frozenset())
        for rid in f.review_ids:
            key = (task["task_id"], rid)
            if key in evidence_rows or rid in already:  # the earliest firing's reason stays
                continue
            d = details.get(rid)
            if d is None:
                continue
            at = at or utc(f.at)
            evidence_rows[key] = {
                "tenant_id": tenant_id,
                "task_id": task["task_id"],
                "review_id": rid,
                "conversation_id": d["conversation_id"],
                "rule_id": f.rule.rule_id,
                "rule_version": f.rule.version,
                "reason": f.reason,
                "at": at,
                "kind": d["kind"],
                "quotes": (d["evidence"] or {}).get(f.category_id or "", [])
                if f.category_id
                else [q for qs in (d["evidence"] or {}).values() for q in qs][:MAX_QUOTES],
            }
    for task, _ in created.values():
        task["needs_confirmation"] = waits[task["slot"]]
    # A withdrawn task never existed in event time: the slot's next task takes up its id.
    await task_store.delete_tasks(session, tenant_id, (t for t in created if t in found.withdrawn))
    inserted = await task_store.insert_tasks(session, [t for t, _ in created.values()])
    lost = {tid: t for tid, (t, _) in created.items() if tid not in inserted}
    if lost:  # another replica's batch opened these slots first: the evidence joins its tasks
        theirs = await task_store.open_tasks(session, tenant_id, {t["slot"] for t in lost.values()})
        for row in evidence_rows.values():
            if row["task_id"] in lost:
                row["task_id"] = theirs[lost[row["task_id"]]["slot"]]["task_id"]
        open_.update(theirs)
        created = {tid: c for tid, c in created.items() if tid in inserted}
    seqs = {**{t["task_id"]: t["evidence_seq"] for t in open_.values() if "evidence_seq" in t}, **inserted}
    await task_store.reopen_tasks(session, tenant_id, list(reopened.values()))
    confirmed = [
        t
        for slot, t in open_.items()
        if t["task_id"] not in created and t["needs_confirmation"] and not waits.get(slot, True)
    ]
    for task in confirmed:
        await task_store.update_task(session, tenant_id, task["task_id"], needs_confirmation=False)
        task["needs_confirmation"] = False
    new_pairs = await task_store.add_evidence(session, list(evidence_rows.values()))
    # Every row sent is stored now, whether this insert or an earlier one (another replica's) stored it.
    sent: dict[str, list[str]] = {}
    for row in evidence_rows.values():
        sent.setdefault(row["task_id"], []).append(row["review_id"])
    known.add(uow, {tid: (seqs[tid], ids) for tid, ids in sent.items() if tid in seqs})
    # Each event names only the evidence it adds (a created task: all of it), in event-time order: a task
    # open for months would otherwise republish, and read back, its whole list on every addition.
    added: dict[str, list[str]] = {}
    for row in sorted(evidence_rows.values(), key=lambda r: (r["at"], r["review_id"])):
        if (row["task_id"], row["review_id"]) in new_pairs:
            added.setdefault(row["task_id"], []).append(row["review_id"])
    by_id = {t["task_id"]: t for t in open_.values()}
    for tid in sorted(set(added) | set(created) | set(reopened)):
        row = by_id[tid]
        ids = added.get(tid, [])
        if tid in created:
            task, _ = created[tid]
            event: CoachingTaskEvent = task_event(
                CoachingTaskCreated,
                task,
                ids,
                occurred_at=task["opened_at"],
                title=task["title"],
                needs_confirmation=task["needs_confirmation"],
            )
            out.publish(envelope(tenant_id, task, event, event_id(task, "created")))
        else:
            event = task_event(CoachingTaskEvidenceAdded, row, [], added_review_ids=ids)
            cause = [
                *sorted(ids),
                *(["opened-by", row["rule_id"], str(row["opened_at"])] if tid in reopened else []),
            ]
            out.publish(envelope(tenant_id, row, event, event_id(row, "evidence", *cause)))
    if (
        confirmed
    ):  # a human review (or a rule that needs no lead) joined: published as a lead's confirmation is
        ids_of = await task_store.evidence_ids(session, tenant_id, [t["task_id"] for t in confirmed])
        for task in sorted(confirmed, key=lambda t: t["task_id"]):
            event = task_event(CoachingTaskConfirmed, task, ids_of.get(task["task_id"], []))
            out.publish(envelope(tenant_id, task, event, event_id(task, "confirmed")))


async def withdraw(
    uow: UnitOfWork,
    out: Outbound,
    tenant_id: str,
    withdrawn: Mapping[str, Sequence[str]],
    reason: str,
    cause: Sequence[str],
) -> None:
    """Publishes the withdrawal of evidence already deleted (task → review ids, none for a task whose opener
    alone changed); a task left with none is dismissed as withdrawn with `reason`, so no task outlives what
    caused it. `cause` makes the events' ids."""
    if not withdrawn:
        return
    session = uow.session
    ids = await task_store.evidence_ids(session, tenant_id, withdrawn)
    rows = await task_store.tasks_by_id(session, tenant_id, withdrawn)
    for tid in sorted(withdrawn):
        row = rows[tid]
        remaining = ids.get(tid, [])
        if remaining:
            event: CoachingTaskEvent = task_event(
                CoachingTaskEvidenceWithdrawn, row, remaining, withdrawn_review_ids=list(withdrawn[tid])
            )
            eid = event_id(row, "withdrawn", *cause)
        else:
            await task_store.update_task(
                session, tenant_id, tid, status="dismissed", dismiss_reason=reason, withdrawn=True
            )
            row["status"] = CoachingTaskStatus.dismissed.value
            event = task_event(CoachingTaskDismissed, row, [], reason=reason)
            eid = event_id(row, "dismissed", *cause)
        out.publish(envelope(tenant_id, row, event, eid))
