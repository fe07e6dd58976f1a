"""Risk alerts: every auto-failed review, and every firing of a rule marked `alert`, raises one RiskAlertRaised."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from qastream_coaching import fact_store, rule_store, task_store
from qastream_coaching.published import SOURCE, key_of
from qastream_coaching.triggers import Firing, ReviewFact
from qastream_coaching.webhooks.outbound import Outbound
from qastream_shared.events import Envelope, RiskAlertRaised, deterministic_id
from qastream_shared.unit_of_work import UnitOfWork

# A category scored below this failed it; an auto-failed review's alert names its critical ones below it.
FAILED_BELOW = 0.5


async def raise_alerts(
    uow: UnitOfWork,
    out: Outbound,
    tenant_id: str,
    facts: Iterable[ReviewFact],
    firings: Iterable[Firing],
    details: dict[str, dict[str, Any]],
) -> None:
    """Every auto-fail, and every firing of a rule marked `alert`, raises one RiskAlertRaised."""
    pending: list[RiskAlertRaised] = []
    critical: dict[str, bool] | None = None
    now = datetime.now(UTC)
    for f in facts:
        if f.auto_failed and f.revision == 0:
            if critical is None:
                critical = await rule_store.known_categories(uow.session, tenant_id)
            failed = sorted(c for c, s in f.categories.items() if s < FAILED_BELOW)
            named = [c for c in failed if critical.get(c)] or failed
            pending.append(
                RiskAlertRaised(
                    alert_id=deterministic_id("alert", tenant_id, f.review_id, "auto_fail"),
                    review_id=f.review_id,
                    conversation_id=f.conversation_id,
                    agent_id=f.agent_id,
                    team=f.team,
                    category_ids=named,
                    reason="review auto-failed: " + (", ".join(named) or "a critical category"),
                    raised_at=now,
                )
            )
    for g in firings:
        if g.rule.alert:
            pending.append(
                RiskAlertRaised(
                    alert_id=deterministic_id("alert", tenant_id, g.cause_id, g.rule.rule_id),
                    review_id=g.review_ids[-1],
                    conversation_id="",
                    agent_id=g.agent_id,
                    team=g.team,
                    rule_id=g.rule.rule_id,
                    category_ids=[g.category_id] if g.category_id else [],
                    reason=f"{g.rule.title}: {g.reason}",
                    raised_at=now,
                )
            )
    if not pending:
        return
    missing = {a.review_id for a in pending if not a.conversation_id} - set(details)
    details = {**details, **await fact_store.review_details(uow.session, tenant_id, missing)}
    for a in pending:
        if not a.conversation_id and a.review_id in details:
            a.conversation_id = details[a.review_id]["conversation_id"]
    new = await task_store.insert_alerts(
        uow.session,
        [
            {
                "alert_id": a.alert_id,
                "tenant_id": tenant_id,
                "review_id": a.review_id,
                "agent_id": a.agent_id,
                "team": a.team,
                "rule_id": a.rule_id,
                "reason": a.reason,
                "raised_at": a.raised_at,
            }
            for a in {a.alert_id: a for a in pending}.values()
        ],
    )
    for a in pending:
        if a.alert_id in new:
            new.discard(a.alert_id)
            out.publish(
                Envelope(
                    data=a,
                    source=SOURCE,
                    tenant=tenant_id,
                    key=key_of(tenant_id, a.agent_id or ""),
                    subject=a.conversation_id,
                    id=a.alert_id,
                )
            )
