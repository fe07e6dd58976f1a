"""The sampler's plan and auto-policy documents: every version is a row, the highest one is current."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from qastream_sampler.plans import AnyPlan, AutoPolicy, parse_plan
from qastream_sampler.tables import auto_policies, plans


async def current_plans(session: AsyncSession, tenant_id: str) -> dict[str, AnyPlan]:
    """The latest version of each of the tenant's plans, by plan id."""
    return {plan.plan_id: plan for plan in await all_plan_versions(session, tenant_id)}


async def insert_plan(session: AsyncSession, tenant_id: str, plan: AnyPlan) -> None:
    await session.execute(
        plans.insert().values(
            tenant_id=tenant_id, plan_id=plan.plan_id, version=plan.version, body=plan.model_dump(mode="json")
        )
    )


async def insert_auto_policy(session: AsyncSession, tenant_id: str, policy: AutoPolicy) -> AutoPolicy:
    """Stores the policy as the tenant's next version and returns it with that version."""
    latest = (
        await session.execute(
            select(func.max(auto_policies.c.version)).where(auto_policies.c.tenant_id == tenant_id)
        )
    ).scalar_one()
    saved = policy.model_copy(update={"version": (latest or 0) + 1})
    await session.execute(
        auto_policies.insert().values(
            tenant_id=tenant_id, version=saved.version, body=saved.model_dump(mode="json")
        )
    )
    return saved


async def all_plan_versions(session: AsyncSession, tenant_id: str) -> list[AnyPlan]:
    """Every version of every plan of the tenant, oldest first within each plan."""
    rows = await session.execute(
        select(plans.c.body).where(plans.c.tenant_id == tenant_id).order_by(plans.c.plan_id, plans.c.version)
    )
    return [parse_plan(body) for (body,) in rows]


async def current_auto_policy(session: AsyncSession, tenant_id: str) -> AutoPolicy:
    body = (
        await session.execute(
            select(auto_policies.c.body)
            .where(auto_policies.c.tenant_id == tenant_id)
            .order_by(auto_policies.c.version.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return AutoPolicy() if body is None else AutoPolicy.model_validate(body)
