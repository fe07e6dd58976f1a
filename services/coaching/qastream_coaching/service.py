"""Coaching's use cases: reviews and disputes in → rules evaluated → tasks and their evidence.

Every function runs inside the caller's unit of work; events leave through `Outbound` (the outbox, plus a
webhook delivery row per subscriber) in the same transaction as the effects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table

from qastream_coaching import store
from qastream_coaching.alerts import raise_alerts
from qastream_coaching.config_cache import ConfigCache
from qastream_coaching.history import HistoryCache
from qastream_coaching.impact_updates import refresh_impacts
from qastream_coaching.published import envelope, task_event, utc
from qastream_coaching.rules import POSITIVE, Rule, Trigger
from qastream_coaching.store import StoredReview
from qastream_coaching.triggers import (
    WEEK_S,
    AgentHistory,
    Firing,
    RejectionFact,
    ReviewFact,
    RuleSet,
    evaluate_rejection,
    evaluate_review,
    longest_window_s,
)
from qastream_coaching.webhooks.outbound import Outbound
from qastream_shared.events import (
    CoachingTaskCreated,
    CoachingTaskDismissed,
    CoachingTaskEvent,
    CoachingTaskEvidenceAdded,
    CoachingTaskEvidenceWithdrawn,
    CoachingTaskStatus,
    DisputeOutcome,
    DisputeResolved,
    Envelope,
    ReviewKind,
    ReviewRevised,
    ReviewSubmitted,
    deterministic_id,
)
from qastream_shared.unit_of_work import UnitOfWork

MAX_QUOTES = 3


def slot_of(agent_id: str, category_id: str | None, rule: Rule) -> str:
    """One open task per agent, category and polarity: new evidence for it joins that task."""
    polarity = "kudos" if rule.trigger in POSITIVE else "coaching"
    return f"{agent_id}\x1f{category_id or ''}\x1f{polarity}"


def task_id_of(tenant_id: str, slot: str, episode: int) -> str:
    """Deterministic: the slot's n-th task (n = tasks already closed in it) has the same id in any replay."""
    return deterministic_id("coaching-task", tenant_id, slot, str(episode))


# --- reviews in ---


@dataclass
class ReviewIn:
    fact: ReviewFact
    quotes: dict[str, list[dict[str, Any]]]


def _quotes(data: ReviewSubmitted | ReviewRevised) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in data.ratings:
        found = [{"turn": e.turn, "quote": e.quote} for e in (r.provenance.evidence if r.provenance else [])]
        if r.comment:
            found.append({"comment": r.comment})
        if found:
            out[r.category_id] = found[:MAX_QUOTES]
    return out


def review_in(data: ReviewSubmitted | ReviewRevised, at: datetime) -> ReviewIn | None:
    """The fact a review gives the rules; None for calibration reviews and reviews of no agent."""
    if data.kind is ReviewKind.calibration or not data.agent_id:
        return None
    fact = ReviewFact(
        review_id=data.review_id,
        conversation_id=data.conversation_id,
        agent_id=data.agent_id,
        team=data.team,
        kind=data.kind.value,
        at=at.timestamp(),
        score=data.score,
        passed=data.passed,
        auto_failed=data.auto_failed,
        categories={r.category_id: r.score for r in data.ratings if r.score is not None},
        revision=data.revision if isinstance(data, ReviewRevised) else 0,
    )
    return ReviewIn(fact, _quotes(data))


def detail_of(r: StoredReview) -> dict[str, Any]:
    """What a task's evidence row takes from a review (as `store.review_details` reads it)."""
    return {"conversation_id": r.fact.conversation_id, "kind": r.fact.kind, "evidence": r.quotes}


async def on_reviews(
    uow: UnitOfWork,
    out: Outbound,
    tenant_id: str,
    events: Sequence[Envelope],
    api_keys: Table,
    cache: ConfigCache,
    history: HistoryCache,
) -> None:
    session = uow.session
    revised_ids = [e.data.review_id for e in events if isinstance(e.data, ReviewRevised)]
    known = await store.review_times(session, tenant_id, revised_ids)
    latest: dict[str, ReviewIn] = {}
    for env in events:
        data = env.data
        assert isinstance(data, ReviewSubmitted | ReviewRevised)
        if isinstance(data, ReviewSubmitted):
            at = data.submitted_at
        else:  # a revision keeps the event time of the review it revises
            at = known[data.review_id][1] if data.review_id in known else data.revised_at
        got = review_in(data, at)
        if got is not None and (
            got.fact.review_id not in latest or latest[got.fact.review_id].fact.revision < got.fact.revision
        ):
            latest[got.fact.review_id] = got
    if not latest:
        return
    rows: list[dict[str, Any]] = [
        {
            "tenant_id": tenant_id,
            "review_id": r.fact.review_id,
            "conversation_id": r.fact.conversation_id,
            "agent_id": r.fact.agent_id,
            "team": r.fact.team,
            "kind": r.fact.kind,
            "revision": r.fact.revision,
            "at": utc(r.fact.at),
            "score": r.fact.score,
            "passed": r.fact.passed,
            "auto_failed": r.fact.auto_failed,
            "categories": dict(r.fact.categories),
            "evidence": r.quotes,
        }
        for r in latest.values()
    ]
    # Sorted, so concurrent batches lock the rows they share in the same order. A stored later revision wins.
    changed = await store.upsert_reviews(session, sorted(rows, key=lambda r: r["review_id"]))
    new_categories = {(tenant_id, c) for r in rows for c in r["categories"]} - cache.categories
    if new_categories:
        await store.add_categories(
            session,
            [{"tenant_id": t, "category_id": c, "critical": False} for t, c in new_categories],
            overwrite=False,
        )
        cache.categories |= new_categories
        uow.on_rollback.append(lambda: cache.categories.difference_update(new_categories))
    facts = sorted((latest[i].fact for i in changed), key=lambda f: (f.at, f.review_id))
    if not facts:
        return
    rules = await cache.active_rules(session, tenant_id)
    agents = {f.agent_id for f in facts}
    written = [StoredReview(latest[i].fact, latest[i].quotes, seq) for i, seq in changed.items()]
    since = min(f.at for f in facts) - longest_window_s(rules)
    window = await history.window(uow, tenant_id, written, since) if rules else {}
    histories = {a: AgentHistory.of(r.fact for r in window.get(a, {}).values()) for a in agents}
    rule_set = RuleSet.of(rules)
    firings: list[Firing] = []
    revised: list[tuple[ReviewFact, list[Firing]]] = []
    for fact in facts:
        fired = evaluate_review(fact, histories[fact.agent_id], rule_set)
        firings.extend(fired)
        if fact.revision > 0:
            revised.append((fact, fired))
    # Reviews stored earlier but later in event time have a new history: the rules that count history judge
    # them again, so the tasks do not depend on the order the reviews arrived in.
    for fact, again in judged_again(facts, window, rules):
        firings.extend(evaluate_review(fact, histories[fact.agent_id], again))
    details = {
        rid: detail_of(r)
        for f in firings
        for rid in f.review_ids
        if (r := window.get(f.agent_id, {}).get(rid)) is not None
    }
    await apply_firings(uow, out, tenant_id, firings, api_keys, cache, details)
    for fact, fired in revised:
        await withdraw_stale(uow, out, tenant_id, fact, fired)
    await raise_alerts(uow, out, tenant_id, facts, firings, details)
    await refresh_impacts(uow, out, tenant_id, agents)


def judged_again(
    new: Sequence[ReviewFact], window: dict[str, dict[str, StoredReview]], rules: Sequence[Rule]
) -> list[tuple[ReviewFact, RuleSet]]:
    """The stored reviews (not in `new`) whose history `new` has just changed, each with the rules that
    count that history: for category failures, a review that failed a category within the longest window
    after one of `new` that failed one; for IQS drops, a scored review within two weeks after a scored one."""
    failures = RuleSet.of(r for r in rules if r.trigger is Trigger.category_failures)
    drops = RuleSet.of(r for r in rules if r.trigger is Trigger.iqs_drop)
    both = RuleSet.of([*drops.rules(), *failures.rules()])
    ids = {f.review_id for f in new}
    out: dict[str, tuple[ReviewFact, RuleSet]] = {}
    for again, reach, counts in (
        (drops, 2 * WEEK_S, lambda f: f.score is not None),
        (failures, longest_window_s(failures.rules()), lambda f: failures.failed_categories(f)),
    ):
        if not again.rules():
            continue
        first: dict[str, float] = {}
        for f in new:
            if counts(f):
                first[f.agent_id] = min(first.get(f.agent_id, f.at), f.at)
        for agent, at in first.items():
            for r in window.get(agent, {}).values():
                f = r.fact
                if at < f.at <= at + reach and f.review_id not in ids and counts(f):
                    # A review judged again by both sets is evaluated once, with both.
                    out[f.review_id] = (f, again if f.review_id not in out else both)
    return sorted(out.values(), key=lambda p: (p[0].at, p[0].review_id))


async def on_disputes(
    uow: UnitOfWork,
    out: Outbound,
    tenant_id: str,
    events: Sequence[Envelope],
    api_keys: Table,
    cache: ConfigCache,
) -> None:
    """Rejected disputes on one category are facts for dispute_rejections rules."""
    facts = [
        RejectionFact(d.dispute_id, d.review_id, d.agent_id, d.team, d.category_id, d.resolved_at.timestamp())
        for e in events
        if isinstance(d := e.data, DisputeResolved)
        and d.outcome is DisputeOutcome.rejected
        and d.agent_id
        and d.category_id
    ]
    new = await store.add_rejections(uow.session, facts, tenant_id)
    facts = sorted((f for f in facts if f.dispute_id in new), key=lambda f: (f.at, f.dispute_id))
    if not facts:
        return
    rules = await cache.active_rules(uow.session, tenant_id)
    if not rules:
        return
    since = utc(min(f.at for f in facts) - longest_window_s(rules))
    history = await store.rejections_of(uow.session, tenant_id, {f.agent_id for f in facts}, since)
    kinds = await store.review_kinds(uow.session, tenant_id, (r.review_id for r in history))
    firings = [
        firing
        for f in facts
        for firing in evaluate_rejection(f, [r for r in history if r.agent_id == f.agent_id], rules, kinds)
    ]
    await apply_firings(uow, out, tenant_id, firings, api_keys, cache, {})
    await raise_alerts(uow, out, tenant_id, [], firings, {})


# --- tasks ---


async def apply_firings(
    uow: UnitOfWork,
    out: Outbound,
    tenant_id: str,
    firings: Sequence[Firing],
    api_keys: Table,
    cache: ConfigCache,
    details: dict[str, dict[str, Any]],
) -> None:
    """Opens a task per slot without one, or adds the evidence to the slot's open task; publishes both."""
    if not firings:
        return
    session = uow.session
    firings = sorted(firings, key=lambda f: (f.at, f.cause_id, f.rule.rule_id))
    slots = {slot_of(f.agent_id, f.category_id, f.rule) for f in firings}
    open_, closed = await store.slot_tasks(session, tenant_id, slots)
    # Only tasks about to open need their team's lead.
    new_teams = {f.team for f in firings if slot_of(f.agent_id, f.category_id, f.rule) not in open_}
    leads = await cache.team_leads(session, api_keys, tenant_id, new_teams)
    missing = {r for f in firings for r in f.review_ids} - set(details)
    details = {**details, **await store.review_details(session, tenant_id, missing)}
    created: dict[str, tuple[dict[str, Any], Firing]] = {}
    evidence_rows: dict[tuple[str, str], dict[str, Any]] = {}
    for f in firings:
        slot = slot_of(f.agent_id, f.category_id, f.rule)
        task = open_.get(slot)
        if task is None:
            task = {
                "task_id": task_id_of(tenant_id, slot, closed.get(slot, 0)),
                "tenant_id": tenant_id,
                "slot": slot,
                "rule_id": f.rule.rule_id,
                "rule_version": f.rule.version,
                "agent_id": f.agent_id,
                "team": f.team,
                "assignee_id": leads.get(f.team or ""),
                "category_id": f.category_id,
                "title": f.rule.title,
                "status": CoachingTaskStatus.open.value,
                "needs_confirmation": f.rule.requires_confirmation and f.auto_only,
                "opened_at": utc(f.at),
                "due_at": utc(f.at) + timedelta(days=f.rule.due_days),
                "impact_reviews": f.rule.impact_reviews,
            }
            created[task["task_id"]] = (task, f)
            open_[slot] = task
        for rid in f.review_ids:
            d = details.get(rid)
            if d is None:
                continue
            evidence_rows.setdefault(
                (task["task_id"], rid),
                {
                    "tenant_id": tenant_id,
                    "task_id": task["task_id"],
                    "review_id": rid,
                    "conversation_id": d["conversation_id"],
                    "rule_id": f.rule.rule_id,
                    "rule_version": f.rule.version,
                    "reason": f.reason,
                    "at": utc(f.at),
                    "kind": d["kind"],
                    "quotes": (d["evidence"] or {}).get(f.category_id or "", [])
                    if f.category_id
                    else [q for qs in (d["evidence"] or {}).values() for q in qs][:MAX_QUOTES],
                },
            )
    inserted = await store.insert_tasks(session, [t for t, _ in created.values()])
    lost = {tid: t for tid, (t, _) in created.items() if tid not in inserted}
    if lost:  # another replica's batch opened these slots first: the evidence joins its tasks
        theirs = await store.open_tasks(session, tenant_id, {t["slot"] for t in lost.values()})
        for row in evidence_rows.values():
            if row["task_id"] in lost:
                row["task_id"] = theirs[lost[row["task_id"]]["slot"]]["task_id"]
        open_.update(theirs)
        created = {tid: c for tid, c in created.items() if tid in inserted}
    new_pairs = await store.add_evidence(session, list(evidence_rows.values()))
    touched = {t for t, _ in new_pairs} | set(created)
    # A task opened in this batch has exactly the evidence added now; only older ones need their list read.
    ids = await store.evidence_ids(session, tenant_id, touched - set(created))
    for row in sorted(evidence_rows.values(), key=lambda r: (r["at"], r["review_id"])):
        if row["task_id"] in created and (row["task_id"], row["review_id"]) in new_pairs:
            ids.setdefault(row["task_id"], []).append(row["review_id"])
    by_id = {t["task_id"]: t for t in open_.values()}
    for tid in sorted(touched):
        row = by_id[tid]
        if tid in created:
            task, f = created[tid]
            event: CoachingTaskEvent = task_event(
                CoachingTaskCreated,
                task,
                ids.get(tid, []),
                occurred_at=task["opened_at"],
                title=task["title"],
                needs_confirmation=task["needs_confirmation"],
            )
            out.publish(envelope(tenant_id, task, event, deterministic_id("coaching", tid, "created")))
        else:
            added = sorted(r for t, r in new_pairs if t == tid)
            event = task_event(CoachingTaskEvidenceAdded, row, ids.get(tid, []))
            out.publish(
                envelope(tenant_id, row, event, deterministic_id("coaching", tid, "evidence", *added))
            )


async def withdraw_stale(
    uow: UnitOfWork, out: Outbound, tenant_id: str, fact: ReviewFact, fired: list[Firing]
) -> None:
    """A revision that no longer fires a rule takes its evidence out of the open tasks it had joined; a task
    left with no evidence is dismissed, so no stale task outlives the score that caused it."""
    session = uow.session
    still = {slot_of(f.agent_id, f.category_id, f.rule) for f in fired}
    keep = {t["task_id"] for t in (await store.open_tasks(session, tenant_id, still)).values()}
    left = await store.withdraw_evidence(session, tenant_id, fact.review_id, keep)
    if not left:
        return
    ids = await store.evidence_ids(session, tenant_id, left)
    rows = await store.tasks_by_id(session, tenant_id, left)
    for tid in left:
        row = rows[tid]
        remaining = ids.get(tid, [])
        if remaining:
            event: CoachingTaskEvent = task_event(
                CoachingTaskEvidenceWithdrawn, row, remaining, withdrawn_review_ids=[fact.review_id]
            )
            eid = deterministic_id("coaching", tid, "withdrawn", fact.review_id, str(fact.revision))
        else:
            reason = (
                f"review {fact.review_id} was revised (revision {fact.revision}) and no longer triggers it"
            )
            await store.update_task(session, tenant_id, tid, status="dismissed", dismiss_reason=reason)
            row["status"] = CoachingTaskStatus.dismissed.value
            event = task_event(CoachingTaskDismissed, row, [], reason=reason)
            eid = deterministic_id("coaching", tid, "dismissed", fact.review_id, str(fact.revision))
        out.publish(envelope(tenant_id, row, event, eid))
