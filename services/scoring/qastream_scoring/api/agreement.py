"""AI-vs-human agreement: which AutoQA categories QA leads can trust, per scorecard version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from qastream_scoring import service
from qastream_scoring.api.common import configured
from qastream_scoring.stores import agreement as store
from qastream_scoring.workflow.agreement import ai_vs_human
from qastream_shared.auth import Principal, require
from qastream_shared.events import Role

router = APIRouter(prefix="/v1", tags=["agreement"])
Analyst = Annotated[Principal, require(Role.admin, Role.qa_lead, Role.platform)]


@router.get("/agreement")
async def agreement(
    request: Request,
    principal: Analyst,
    scorecard_id: Annotated[
        str | None, Query(max_length=64, description="default: the active scorecard")
    ] = None,
) -> Any:
    """Krippendorff's α and % agreement between AutoQA and manual ratings of the same conversation and
    category, per scorecard version (manual reviews at their current revision)."""
    tenant = principal.tenant_id
    async with configured(request, tenant) as (uow, _, active):
        sid = scorecard_id or active.scorecard_id
        pairs = await store.pairs(uow, tenant, sid)
        cards = {v: await service.version(uow, tenant, sid, v) for v in sorted({v for v, _ in pairs})}
    versions: list[dict[str, Any]] = []
    for v, card in cards.items():
        assert card is not None  # the reviews name published versions
        versions.append(
            {
                "scorecard_version": v,
                "categories": [
                    {"category_id": c.category_id, **ai_vs_human(c.scale, pairs[(v, c.category_id)])}
                    for c in card.categories()
                    if (v, c.category_id) in pairs
                ],
            }
        )
    return {"scorecard_id": sid, "versions": versions}
