"""AI-vs-human pairs: for each manual review, the AutoQA rating of the same conversation, scorecard version
and category (the newest AutoQA review when scorers changed), where both gave a value."""

from __future__ import annotations

from sqlalchemy import text

from qastream_shared.unit_of_work import UnitOfWork

_PAIRS = text(
    """
    SELECT m.scorecard_version, mr->>'category_id' AS category_id,
           (ar->>'value')::int AS auto_value, (mr->>'value')::int AS manual_value
    FROM reviews m
    CROSS JOIN LATERAL (
        SELECT a.ratings FROM reviews a
        WHERE a.tenant_id = m.tenant_id AND a.conversation_id = m.conversation_id AND a.kind = 'auto'
          AND a.scorecard_id = m.scorecard_id AND a.scorecard_version = m.scorecard_version
        ORDER BY a.submitted_at DESC LIMIT 1
    ) a
    CROSS JOIN LATERAL jsonb_array_elements(m.ratings) mr
    CROSS JOIN LATERAL jsonb_array_elements(a.ratings) ar
    WHERE m.tenant_id = :tenant AND m.kind = 'manual' AND m.scorecard_id = :scorecard
      AND ar->>'category_id' = mr->>'category_id'
      AND mr->>'value' IS NOT NULL AND ar->>'value' IS NOT NULL
    ORDER BY m.scorecard_version, category_id, m.review_id
    """
)


async def pairs(
    uow: UnitOfWork, tenant_id: str, scorecard_id: str
) -> dict[tuple[int, str], list[tuple[int, int]]]:
    """(scorecard version, category) → [(auto value, manual value)], one per manual review."""
    out: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for version, category, auto, manual in await uow.session.execute(
        _PAIRS, {"tenant": tenant_id, "scorecard": scorecard_id}
    ):
        out.setdefault((version, category), []).append((auto, manual))
    return out
