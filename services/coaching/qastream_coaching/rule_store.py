"""Coaching's SQL for a tenant's rules (immutable versions) and the categories rules may name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_coaching.rules import Rule
from qastream_coaching.tables import categories, rules
from qastream_shared.db import array_insert, array_params

# Parsed rule versions are immutable, so one parse serves every batch. The body is kept and compared: a
# process that reads two schemas (tests, tools) may meet different bodies under the same id and version.
_PARSED: dict[tuple[str, str, int], tuple[dict[str, Any], Rule]] = {}
_CATEGORY_COLUMNS = ("tenant_id", "category_id", "critical")
_ADD_CATEGORIES = array_insert(categories, _CATEGORY_COLUMNS)
_UPSERT_CATEGORIES = array_insert(
    categories,
    _CATEGORY_COLUMNS,
    suffix="ON CONFLICT (tenant_id, category_id) DO UPDATE SET critical = excluded.critical",
)


def _rule(tenant_id: str, body: dict[str, Any]) -> Rule:
    key = (tenant_id, body["rule_id"], body["version"])
    cached = _PARSED.get(key)
    if cached is None or cached[0] != body:
        cached = _PARSED[key] = (body, Rule.model_validate(body))
    return cached[1]


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
