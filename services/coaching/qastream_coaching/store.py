"""Coaching's SQL for rules, review facts, tasks, evidence and alerts. Every function takes the tenant."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import and_, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_coaching.rules import Rule
from qastream_coaching.tables import alerts, categories, evidence, rejections, reviews, rules, tasks
from qastream_coaching.triggers import RejectionFact, ReviewFact
from qastream_shared.db import array_insert, array_params

OPEN = ("open", "acknowledged")

# Parsed rule versions are immutable, so one parse serves every batch.
_PARSED: dict[tuple[str, str, int], Rule] = {}

_REVIEW_COLUMNS = (
    "tenant_id", "review_id", "conversation_id", "agent_id", "team", "kind", "revision", "at", "score",
    "passed", "auto_failed", "categories", "evidence",
)  # fmt: skip
# A later revision replaces the row; a redelivered or older one changes nothing.
_UPSERT_REVIEWS = array_insert(
    reviews,
    _REVIEW_COLUMNS,
    suffix=(
        "ON CONFLICT (tenant_id, review_id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in _REVIEW_COLUMNS[2:] if c != "at")
        + ", write_seq = nextval('review_writes')"
        + f" WHERE {reviews.name}.revision < excluded.revision RETURNING review_id, write_seq"
    ),
)
_CATEGORY_COLUMNS = ("tenant_id", "category_id", "critical")
_ADD_CATEGORIES = array_insert(categories, _CATEGORY_COLUMNS)
_UPSERT_CATEGORIES = array_insert(
    categories,
    _CATEGORY_COLUMNS,
    suffix="ON CONFLICT (tenant_id, category_id) DO UPDATE SET critical = excluded.critical",
)
_TASK_COLUMNS = (
    "task_id", "tenant_id", "slot", "rule_id", "rule_version", "agent_id", "team", "assignee_id", "category_id",
    "title", "status", "needs_confirmation", "opened_at", "due_at", "impact_reviews",
)  # fmt: skip
_INSERT_TASKS = array_insert(tasks, _TASK_COLUMNS, suffix="ON CONFLICT DO NOTHING RETURNING task_id")
_EVIDENCE_COLUMNS = (
    "tenant_id", "task_id", "review_id", "conversation_id", "rule_id", "rule_version", "reason", "at", "kind",
    "quotes",
)  # fmt: skip
_INSERT_EVIDENCE = array_insert(
    evidence, _EVIDENCE_COLUMNS, suffix="ON CONFLICT DO NOTHING RETURNING task_id, review_id"
)
_ALERT_COLUMNS = ("alert_id", "tenant_id", "review_id", "agent_id", "team", "rule_id", "reason", "raised_at")
_INSERT_ALERTS = array_insert(alerts, _ALERT_COLUMNS, suffix="ON CONFLICT DO NOTHING RETURNING alert_id")
# JSON columns come as text for orjson, several times faster than the driver's json decoding.
_HISTORY = text(
    f"SELECT review_id, conversation_id, agent_id, team, kind, revision, at, score, passed, auto_failed, "
    f"categories::text AS categories, evidence::text AS evidence, write_seq FROM {reviews.name} "
    "WHERE tenant_id = :tenant AND agent_id = ANY(CAST(:agents AS text[])) AND at > :since"
)
_WRITES = text(
    f"SELECT agent_id, count(*), sum(write_seq) FROM {reviews.name} "
    "WHERE tenant_id = :tenant AND agent_id = ANY(CAST(:agents AS text[])) AND at > :since GROUP BY agent_id"
)


def _rule(tenant_id: str, body: dict[str, Any]) -> Rule:
    key = (tenant_id, body["rule_id"], body["version"])
    rule = _PARSED.get(key)
    if rule is None:
        rule = _PARSED[key] = Rule.model_validate(body)
    return rule


# --- rules ---


async def current_rules(session: AsyncSession, tenant_id: str) -> dict[str, Rule]:
    """The latest version of each of the tenant's rules, by rule id."""
    rows = await session.execute(
        select(rules.c.body).where(rules.c.tenant_id == tenant_id).order_by(rules.c.rule_id, rules.c.version)
    )
    return {r.rule_id: r for r in (_rule(tenant_id, body) for (body,) in rows)}


async def rule_version(session: AsyncSession, tenant_id: str, rule_id: str, version: int) -> Rule | None:
    row = (
        await session.execute(
            select(rules.c.body).where(
                rules.c.tenant_id == tenant_id, rules.c.rule_id == rule_id, rules.c.version == version
            )
        )
    ).first()
    return _rule(tenant_id, row[0]) if row else None


async def save_rule(session: AsyncSession, tenant_id: str, rule: Rule) -> bool:
    """Stores a new version; False when a concurrent edit took that version number."""
    inserted = await session.execute(
        pg_insert(rules)
        .values(
            tenant_id=tenant_id, rule_id=rule.rule_id, version=rule.version, body=rule.model_dump(mode="json")
        )
        .on_conflict_do_nothing()
        .returning(rules.c.version)
    )
    return inserted.first() is not None


# --- categories ---


async def known_categories(session: AsyncSession, tenant_id: str) -> dict[str, bool]:
    """category → critical, for every category the tenant's scorecards or reviews have."""
    rows = await session.execute(
        select(categories.c.category_id, categories.c.critical).where(categories.c.tenant_id == tenant_id)
    )
    return {c: bool(crit) for c, crit in rows}


async def add_categories(session: AsyncSession, rows: Sequence[dict[str, Any]], *, overwrite: bool) -> None:
    """Scorecards say which categories are critical (overwrite); reviews only add ones not seen yet."""
    if not rows:
        return
    unique = sorted({(r["tenant_id"], r["category_id"]): r for r in rows}.items())
    params = array_params(_CATEGORY_COLUMNS, [r for _, r in unique])
    await session.execute(_UPSERT_CATEGORIES if overwrite else _ADD_CATEGORIES, params)


# --- review facts ---


async def review_times(
    session: AsyncSession, tenant_id: str, review_ids: Iterable[str]
) -> dict[str, tuple[int, datetime]]:
    """review → (stored revision, event time) for the reviews coaching already holds."""
    ids = list(review_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(reviews.c.review_id, reviews.c.revision, reviews.c.at).where(
            reviews.c.tenant_id == tenant_id, reviews.c.review_id.in_(ids)
        )
    )
    return {rid: (rev, at) for rid, rev, at in rows}


async def upsert_reviews(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Stores review facts; returns the ids whose row changed (new, or a later revision) → its write_seq."""
    if not rows:
        return {}
    params = array_params(_REVIEW_COLUMNS, rows)
    params["categories"] = [orjson.dumps(c).decode() for c in params["categories"]]
    params["evidence"] = [orjson.dumps(e).decode() for e in params["evidence"]]
    result = await session.execute(_UPSERT_REVIEWS, params)
    return dict(result.tuples().all())


class StoredReview(NamedTuple):
    """A stored review as the rules and the tasks' evidence read it."""

    fact: ReviewFact
    quotes: dict[str, list[dict[str, Any]]]  # category → what the scorer or reviewer pointed at
    write_seq: int


def fact_of(row: Any, categories: dict[str, float] | None = None) -> ReviewFact:
    return ReviewFact(
        review_id=row["review_id"],
        conversation_id=row["conversation_id"],
        agent_id=row["agent_id"],
        team=row["team"],
        kind=row["kind"],
        at=row["at"].timestamp(),
        score=row["score"],
        passed=row["passed"],
        auto_failed=row["auto_failed"],
        categories=row["categories"] if categories is None else categories,
        revision=row["revision"],
    )


async def histories(
    session: AsyncSession, tenant_id: str, agents: Iterable[str], since: datetime
) -> dict[str, list[StoredReview]]:
    """The agents' stored reviews after `since` (event time)."""
    rows = (
        await session.execute(_HISTORY, {"tenant": tenant_id, "agents": sorted(set(agents)), "since": since})
    ).mappings()
    found: dict[str, list[StoredReview]] = {}
    for row in rows:
        fact = fact_of(row, orjson.loads(row["categories"]))
        found.setdefault(row["agent_id"], []).append(
            StoredReview(fact, orjson.loads(row["evidence"]), row["write_seq"])
        )
    return found


async def writes(
    session: AsyncSession, tenant_id: str, agents: Iterable[str], since: datetime
) -> dict[str, tuple[int, int]]:
    """agent → (number of stored reviews after `since`, the sum of their write_seq); agents with none left out."""
    rows = await session.execute(
        _WRITES, {"tenant": tenant_id, "agents": sorted(set(agents)), "since": since}
    )
    return {agent: (int(n), int(total)) for agent, n, total in rows}


async def reviews_of(session: AsyncSession, tenant_id: str, agent_id: str) -> list[ReviewFact]:
    rows = await session.execute(
        select(reviews)
        .where(reviews.c.tenant_id == tenant_id, reviews.c.agent_id == agent_id)
        .order_by(reviews.c.at)
    )
    return [fact_of(r) for r in rows.mappings()]


async def review_kinds(session: AsyncSession, tenant_id: str, review_ids: Iterable[str]) -> dict[str, str]:
    ids = list(set(review_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(reviews.c.review_id, reviews.c.kind).where(
            reviews.c.tenant_id == tenant_id, reviews.c.review_id.in_(ids)
        )
    )
    return dict(rows.tuples().all())


def _detail(row: Any) -> dict[str, Any]:
    return {"conversation_id": row["conversation_id"], "kind": row["kind"], "evidence": row["evidence"]}


async def review_details(
    session: AsyncSession, tenant_id: str, review_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    ids = list(set(review_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(reviews.c.review_id, reviews.c.conversation_id, reviews.c.kind, reviews.c.evidence).where(
            reviews.c.tenant_id == tenant_id, reviews.c.review_id.in_(ids)
        )
    )
    return {r["review_id"]: _detail(r) for r in rows.mappings()}


# --- disputes ---


async def add_rejections(session: AsyncSession, facts: Sequence[RejectionFact], tenant_id: str) -> set[str]:
    if not facts:
        return set()
    result = await session.execute(
        pg_insert(rejections)
        .values(
            [
                {
                    "tenant_id": tenant_id,
                    "dispute_id": f.dispute_id,
                    "review_id": f.review_id,
                    "agent_id": f.agent_id,
                    "team": f.team,
                    "category_id": f.category_id,
                    "at": datetime.fromtimestamp(f.at, UTC),
                }
                for f in facts
            ]
        )
        .on_conflict_do_nothing()
        .returning(rejections.c.dispute_id)
    )
    return set(result.scalars().all())


async def rejections_of(
    session: AsyncSession, tenant_id: str, agents: Iterable[str], since: datetime
) -> list[RejectionFact]:
    rows = await session.execute(
        select(rejections).where(
            rejections.c.tenant_id == tenant_id,
            rejections.c.agent_id.in_(sorted(set(agents))),
            rejections.c.at > since,
        )
    )
    return [
        RejectionFact(
            r["dispute_id"], r["review_id"], r["agent_id"], r["team"], r["category_id"], r["at"].timestamp()
        )
        for r in rows.mappings()
    ]


# --- tasks ---


async def open_tasks(
    session: AsyncSession, tenant_id: str, slots: Iterable[str]
) -> dict[str, dict[str, Any]]:
    wanted = sorted(set(slots))
    if not wanted:
        return {}
    rows = await session.execute(
        select(tasks)
        .where(tasks.c.tenant_id == tenant_id, tasks.c.slot.in_(wanted), tasks.c.status.in_(OPEN))
        .with_for_update()
    )
    return {r["slot"]: dict(r) for r in rows.mappings()}


async def slot_tasks(
    session: AsyncSession, tenant_id: str, slots: Iterable[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """The open task of each slot (locked) and how many tasks each slot has closed, in one read."""
    wanted = sorted(set(slots))
    if not wanted:
        return {}, {}
    rows = await session.execute(
        select(tasks).where(tasks.c.tenant_id == tenant_id, tasks.c.slot.in_(wanted)).with_for_update()
    )
    open_: dict[str, dict[str, Any]] = {}
    closed: dict[str, int] = {}
    for r in rows.mappings():
        if r["status"] in OPEN:
            open_[r["slot"]] = dict(r)
        else:
            closed[r["slot"]] = closed.get(r["slot"], 0) + 1
    return open_, closed


async def insert_tasks(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Inserts new tasks; returns the ids inserted (a concurrent batch may have taken a slot first)."""
    if not rows:
        return set()
    result = await session.execute(_INSERT_TASKS, array_params(_TASK_COLUMNS, rows))
    return set(result.scalars().all())


async def add_evidence(session: AsyncSession, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Adds evidence rows; returns the (task, review) pairs that were new."""
    if not rows:
        return set()
    params = array_params(_EVIDENCE_COLUMNS, rows)
    params["quotes"] = [orjson.dumps(q).decode() for q in params["quotes"]]
    result = await session.execute(_INSERT_EVIDENCE, params)
    return {(t, r) for t, r in result}


async def evidence_ids(
    session: AsyncSession, tenant_id: str, task_ids: Iterable[str]
) -> dict[str, list[str]]:
    ids = sorted(set(task_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(evidence.c.task_id, evidence.c.review_id)
        .where(evidence.c.tenant_id == tenant_id, evidence.c.task_id.in_(ids))
        .order_by(evidence.c.task_id, evidence.c.at, evidence.c.review_id)
    )
    out: dict[str, list[str]] = {}
    for t, r in rows:
        out.setdefault(t, []).append(r)
    return out


async def evidence_of(session: AsyncSession, tenant_id: str, task_id: str) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(evidence)
        .where(evidence.c.tenant_id == tenant_id, evidence.c.task_id == task_id)
        .order_by(evidence.c.at, evidence.c.review_id)
    )
    return [dict(r) for r in rows.mappings()]


async def withdraw_evidence(
    session: AsyncSession, tenant_id: str, review_id: str, keep: set[str]
) -> list[str]:
    """Removes a review's evidence from its open tasks except those in `keep`; returns the tasks it left."""
    open_ids = select(tasks.c.task_id).where(tasks.c.tenant_id == tenant_id, tasks.c.status.in_(OPEN))
    result = await session.execute(
        evidence.delete()
        .where(
            evidence.c.tenant_id == tenant_id,
            evidence.c.review_id == review_id,
            evidence.c.task_id.in_(open_ids),
            evidence.c.task_id.not_in(sorted(keep)) if keep else and_(True),
        )
        .returning(evidence.c.task_id)
    )
    return sorted(set(result.scalars().all()))


async def task(
    session: AsyncSession, tenant_id: str, task_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    q = select(tasks).where(tasks.c.tenant_id == tenant_id, tasks.c.task_id == task_id)
    row = (await session.execute(q.with_for_update() if lock else q)).mappings().first()
    return dict(row) if row else None


async def tasks_by_id(
    session: AsyncSession, tenant_id: str, task_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    ids = sorted(set(task_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(tasks).where(tasks.c.tenant_id == tenant_id, tasks.c.task_id.in_(ids))
    )
    return {r["task_id"]: dict(r) for r in rows.mappings()}


async def update_task(session: AsyncSession, tenant_id: str, task_id: str, **values: Any) -> None:
    await session.execute(
        update(tasks)
        .where(tasks.c.tenant_id == tenant_id, tasks.c.task_id == task_id)
        .values(updated_at=func.now(), **values)
    )


async def completed_tasks(
    session: AsyncSession, tenant_id: str, agents: Iterable[str]
) -> list[dict[str, Any]]:
    """Completed tasks of these agents whose impact still waits for reviews after completion."""
    rows = await session.execute(
        select(tasks).where(
            tasks.c.tenant_id == tenant_id,
            tasks.c.agent_id.in_(sorted(set(agents))),
            tasks.c.status == "completed",
            func.coalesce(tasks.c.impact["n_after"].as_integer(), 0) < tasks.c.impact_reviews,
        )
    )
    return [dict(r) for r in rows.mappings()]


async def team_leads(
    session: AsyncSession, api_keys: Any, tenant_id: str, teams: Iterable[str | None]
) -> dict[str, str]:
    """team → its lead: the agent id of the team's lead key (role team_lead), the lowest if several."""
    wanted = sorted({t for t in teams if t})
    if not wanted:
        return {}
    rows = await session.execute(
        select(api_keys.c.team, func.min(api_keys.c.agent_id))
        .where(
            api_keys.c.tenant_id == tenant_id,
            api_keys.c.role == "team_lead",
            api_keys.c.team.in_(wanted),
            api_keys.c.agent_id.is_not(None),
            api_keys.c.revoked_at.is_(None),
        )
        .group_by(api_keys.c.team)
    )
    return dict(rows.tuples().all())


# --- alerts ---


async def insert_alerts(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    if not rows:
        return set()
    result = await session.execute(_INSERT_ALERTS, array_params(_ALERT_COLUMNS, rows))
    return set(result.scalars().all())
