"""Coaching's use cases: reviews and disputes in → rules evaluated (in event time) → firings for the tasks.

Every function runs inside the caller's unit of work; events leave through `Outbound` (the outbox, plus a
webhook delivery row per subscriber) in the same transaction as the effects.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table

from qastream_coaching import fact_store, rule_store
from qastream_coaching.alerts import raise_alerts
from qastream_coaching.config_cache import ConfigCache
from qastream_coaching.fact_store import StoredReview
from qastream_coaching.history import HistoryCache
from qastream_coaching.impact_updates import refresh_impacts
from qastream_coaching.known_evidence import KnownEvidence
from qastream_coaching.published import utc
from qastream_coaching.recheck import history_needed_s, recheck, spans_of
from qastream_coaching.rules import Rule, Trigger
from qastream_coaching.task_updates import MAX_QUOTES, apply_firings
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
    DisputeOutcome,
    DisputeResolved,
    Envelope,
    ReviewKind,
    ReviewRevised,
    ReviewSubmitted,
)
from qastream_shared.unit_of_work import UnitOfWork

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
    """What a task's evidence row takes from a review (as `fact_store.review_details` reads it)."""
    return {"conversation_id": r.fact.conversation_id, "kind": r.fact.kind, "evidence": r.quotes}


async def on_reviews(
    uow: UnitOfWork,
    out: Outbound,
    tenant_id: str,
    events: Sequence[Envelope],
    api_keys: Table,
    cache: ConfigCache,
    history: HistoryCache,
    known_evidence: KnownEvidence,
) -> None:
    session = uow.session
    revised_ids = [e.data.review_id for e in events if isinstance(e.data, ReviewRevised)]
    known = await fact_store.review_times(session, tenant_id, revised_ids)
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
    changed = await fact_store.upsert_reviews(session, sorted(rows, key=lambda r: r["review_id"]))
    new_categories = {(tenant_id, c) for r in rows for c in r["categories"]} - cache.categories
    if new_categories:
        await rule_store.add_categories(
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
    revising = [f.at for f in facts if f.revision > 0]
    since = min(f.at for f in facts) - history_needed_s(rules, revising=False)
    if revising:
        since = min(since, min(revising) - history_needed_s(rules, revising=True))
    window = await history.window(uow, tenant_id, written, since) if rules else {}
    rule_set = RuleSet.of(rules)
    histories = {
        a: AgentHistory.of((r.fact for r in window.get(a, {}).values()), rule_set.fail_below) for a in agents
    }
    firings: list[Firing] = []
    for fact in facts:
        firings.extend(evaluate_review(fact, histories[fact.agent_id], rule_set))
    # Reviews stored earlier but later in event time have a new history: the rules that count history judge
    # them again, so the tasks do not depend on the order the reviews arrived in.
    for fact, again in judged_again(facts, histories, rules):
        firings.extend(evaluate_review(fact, histories[fact.agent_id], again))
    cited = {(f.agent_id, rid) for f in firings for rid in f.review_ids}
    details = {rid: detail_of(r) for a, rid in cited if (r := window.get(a, {}).get(rid)) is not None}
    await apply_firings(uow, out, tenant_id, firings, api_keys, cache, details, known_evidence)
    spans = spans_of(facts, histories, rules)
    await recheck(uow, out, tenant_id, spans, histories, rules, sorted(f.review_id for f in facts))
    await raise_alerts(uow, out, tenant_id, facts, firings, details)
    await refresh_impacts(uow, out, tenant_id, agents)


def judged_again(
    new: Sequence[ReviewFact], histories: dict[str, AgentHistory], rules: Sequence[Rule]
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
        (failures, longest_window_s(failures.rules()), lambda f: failures.fails_any(f)),
    ):
        if not again.rules():
            continue
        first: dict[str, float] = {}
        for f in new:
            if counts(f):
                first[f.agent_id] = min(first.get(f.agent_id, f.at), f.at)
        for agent, at in first.items():
            h = histories[agent]  # in event time: the reviews after `at` within reach are one slice
            for f in h.facts[bisect_right(h.times, at) : bisect_right(h.times, at + reach)]:
                if f.review_id not in ids and counts(f):
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
    known_evidence: KnownEvidence,
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
    new = await fact_store.add_rejections(uow.session, facts, tenant_id)
    facts = sorted((f for f in facts if f.dispute_id in new), key=lambda f: (f.at, f.dispute_id))
    if not facts:
        return
    rules = await cache.active_rules(uow.session, tenant_id)
    if not rules:
        return
    since = utc(min(f.at for f in facts) - longest_window_s(rules))
    history = await fact_store.rejections_of(uow.session, tenant_id, {f.agent_id for f in facts}, since)
    kinds = await fact_store.review_kinds(uow.session, tenant_id, (r.review_id for r in history))
    firings = [
        firing
        for f in facts
        for firing in evaluate_rejection(f, [r for r in history if r.agent_id == f.agent_id], rules, kinds)
    ]
    await apply_firings(uow, out, tenant_id, firings, api_keys, cache, {}, known_evidence)
    await raise_alerts(uow, out, tenant_id, [], firings, {})
