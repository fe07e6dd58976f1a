"""Simulated reviewer personas for the demo: they are not people, and everything they write says so.

Each persona rates like a reviewer with a known habit, starting from the AutoQA rating of each category and
moving it one step on the category's scale now and then, decided by a stable hash, so a rerun of the demo
gives the same reviews. Calibration then shows real disagreement between them, and α means something.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from qastream_shared.scorecard import Scorecard

SIMULATED = "(simulated persona)"


@dataclass(frozen=True)
class Persona:
    reviewer_id: str
    habit: str
    # The share of categories the persona rates one step away from AutoQA, and which way (-1 or +1).
    drift: float
    direction: int


PERSONAS = (
    Persona("reviewer-ana", "rates by the book: mostly agrees with AutoQA", 0.10, -1),
    Persona("reviewer-ben", "strict: marks down borderline categories", 0.35, -1),
    Persona("reviewer-chloe", "lenient: gives the benefit of the doubt", 0.35, +1),
)


def _unit(*parts: str) -> float:
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def ratings(
    persona: Persona, card: Scorecard, conversation_id: str, auto: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One rating per category of `card`: AutoQA's value, nudged by the persona's habit; N/A where AutoQA
    had none and the category allows it, else the scale's midpoint."""
    auto_values = {r["category_id"]: r.get("value") for r in auto}
    out = []
    for cat in card.categories():
        bounds = cat.scale.bounds()
        if bounds is None:
            continue
        low, high = bounds
        value = auto_values.get(cat.category_id)
        if value is None:
            if cat.allow_na:
                out.append({"category_id": cat.category_id, "value": None, "comment": SIMULATED})
                continue
            value = (low + high) // 2
        if _unit(persona.reviewer_id, conversation_id, cat.category_id) < persona.drift:
            value = min(high, max(low, value + persona.direction))
        rating: dict[str, Any] = {"category_id": cat.category_id, "value": value}
        if value < high and cat.root_cause_tags:
            rating["root_causes"] = [cat.root_cause_tags[0]]
        out.append(rating)
    return out
