"""Tasks from rule firings: a slot's task, opened by its earliest firing in event time; evidence added to it;
evidence withdrawn when what fired no longer does. Runs inside the caller's unit of work and publishes every
change through `Outbound`, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Table

from qastream_coaching import fact_store, task_store
from qastream_coaching.config_cache import ConfigCache
from qastream_coaching.published import envelope, task_event, utc
from qastream_coaching.rules import POSITIVE, Rule
from qastream_coaching.triggers import Firing
from qastream_coaching.webhooks.outbound import Outbound
from qastream_shared.events import (
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
    """Deterministic: the slot's n-th task (n = tasks already closed in it) has the same id in any replay."""
    return deterministic_id("coaching-task", tenant_id, slot, str(episode))


def _order(f: Firing) -> tuple[float, str, str]:
    """Which firing opens a slot's task: the earliest in event time, then the lowest rule id (a stable choice
    between rules firing on the same review), whatever order they arrived in."""
    return (f.at, f.rule.rule_id, f.cause_id)


def _opening(f: Firing) -> dict[str, Any]:
    """What the firing that opens a task decides about it."""
    return {
        "rule_id": f.rule.rule_id,
        "rule_version": f.rule.version,
        "title": f.rule.title,
        "opened_at": utc(f.at),
        "due_at": utc(f.at) + timedelta(days=f.rule.due_days),
        "impact_reviews": f.rule.impact_reviews,
    }


def _opens_earlier(f: Firing, task: Mapping[str, Any]) -> bool:
    return (f.at, f.rule.rule_id) < (task["opened_at"].timestamp(), task["rule_id"])


async def apply_firings(
    uow: UnitOfWork,
    out: Outbound,
    tenant_id: str,
    firings: Sequence[Firing],
    api_keys: Table,
    cache: ConfigCache,
    details: dict[str, dict[str, Any]],
) -> None:
    """Opens a task per slot without one, or adds the evidence to the slot's open task; publishes both. A firing
    earlier than the one that opened its slot's task (a review that arrived late) becomes the task's opener, so
    the task's rule, title and dates are those an event-time order would have given."""
    if not firings:
        return
    session = uow.session
    firings = sorted(firings, key=_order)
    slots = {slot_of(f.agent_id, f.category_id, f.rule) for f in firings}
    open_, closed = await task_store.slot_tasks(session, tenant_id, slots)
    # Only tasks about to open need their team's lead.
    new_teams = {f.team for f in firings if slot_of(f.agent_id, f.category_id, f.rule) not in open_}
    leads = await cache.team_leads(session, api_keys, tenant_id, new_teams)
    missing = {r for f in firings for r in f.review_ids} - set(details)
    details = {**details, **await fact_store.review_details(session, tenant_id, missing)}
    created: dict[str, tuple[dict[str, Any], Firing]] = {}
    reopened: dict[str, dict[str, Any]] = {}
    evidence_rows: dict[tuple[str, str], dict[str, Any]] = {}
    for f in firings:
        slot = slot_of(f.agent_id, f.category_id, f.rule)
        task = open_.get(slot)
        if task is None:
            task = {
                "task_id": task_id_of(tenant_id, slot, closed.get(slot, 0)),
                "tenant_id": tenant_id,
                "slot": slot,
                **_opening(f),
                "agent_id": f.agent_id,
                "team": f.team,
                "assignee_id": leads.get(f.team or ""),
                "category_id": f.category_id,
                "status": CoachingTaskStatus.open.value,
                "needs_confirmation": f.rule.requires_confirmation and f.auto_only,
            }
            created[task["task_id"]] = (task, f)
            open_[slot] = task
        elif task["task_id"] not in created and _opens_earlier(f, task):
            task.update(_opening(f))
            reopened[task["task_id"]] = task
        at = None
        for rid in f.review_ids:
            key = (task["task_id"], rid)
            d = details.get(rid)
            if d is None or key in evidence_rows:  # the earliest firing's reason stays
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
    inserted = await task_store.insert_tasks(session, [t for t, _ in created.values()])
    lost = {tid: t for tid, (t, _) in created.items() if tid not in inserted}
    if lost:  # another replica's batch opened these slots first: the evidence joins its tasks
        theirs = await task_store.open_tasks(session, tenant_id, {t["slot"] for t in lost.values()})
        for row in evidence_rows.values():
            if row["task_id"] in lost:
                row["task_id"] = theirs[lost[row["task_id"]]["slot"]]["task_id"]
        open_.update(theirs)
        created = {tid: c for tid, c in created.items() if tid in inserted}
    await task_store.reopen_tasks(session, tenant_id, list(reopened.values()))
    new_pairs = await task_store.add_evidence(session, list(evidence_rows.values()))
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
            out.publish(envelope(tenant_id, task, event, deterministic_id("coaching", tid, "created")))
        else:
            event = task_event(CoachingTaskEvidenceAdded, row, [], added_review_ids=ids)
            cause = [
                *sorted(ids),
                *(["opened-by", row["rule_id"], str(row["opened_at"])] if tid in reopened else []),
            ]
            out.publish(
                envelope(tenant_id, row, event, deterministic_id("coaching", tid, "evidence", *cause))
            )


async def withdraw(
    uow: UnitOfWork,
    out: Outbound,
    tenant_id: str,
    withdrawn: Mapping[str, Sequence[str]],
    reason: str,
    cause: Sequence[str],
) -> None:
    """Publishes the withdrawal of evidence already deleted (task → review ids); a task left with none is
    dismissed with `reason`, so no task outlives what caused it. `cause` makes the events' ids."""
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
            eid = deterministic_id("coaching", tid, "withdrawn", *cause)
        else:
            await task_store.update_task(session, tenant_id, tid, status="dismissed", dismiss_reason=reason)
            row["status"] = CoachingTaskStatus.dismissed.value
            event = task_event(CoachingTaskDismissed, row, [], reason=reason)
            eid = deterministic_id("coaching", tid, "dismissed", *cause)
        out.publish(envelope(tenant_id, row, event, eid))


async def withdraw_stale(
    uow: UnitOfWork,
    out: Outbound,
    tenant_id: str,
    review_id: str,
    revision: int,
    fired: list[Firing],
    kept: set[str],
) -> None:
    """A revision that no longer fires a rule takes its evidence out of the open tasks it had joined, except
    those of the slots it still fires and of `kept` (slots another check is responsible for)."""
    still = {slot_of(f.agent_id, f.category_id, f.rule) for f in fired} | kept
    keep = {t["task_id"] for t in (await task_store.open_tasks(uow.session, tenant_id, still)).values()}
    left = await task_store.withdraw_evidence(uow.session, tenant_id, review_id, keep)
    reason = f"review {review_id} was revised (revision {revision}) and no longer triggers it"
    await withdraw(uow, out, tenant_id, {t: [review_id] for t in left}, reason, [review_id, str(revision)])
