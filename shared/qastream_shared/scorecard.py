"""Scorecard contract: the shape published on qa.scorecards and stamped on every review."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SLUG = r"^[a-z0-9][a-z0-9_\-]{0,63}$"


class ScaleKind(StrEnum):
    binary = "binary"
    three_point = "3-point"
    four_point = "4-point"
    five_point = "5-point"
    points = "points"


class Scale(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ScaleKind
    # Only the points scale sets its own maximum; n-point scales run 1..n and binary 0..1.
    max_points: int | None = Field(default=None, ge=1, le=1000)


class ScorerRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category_id: str = Field(pattern=SLUG)
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    weight: int = Field(ge=0, le=100)
    scale: Scale
    allow_na: bool = False
    critical: bool = False
    root_cause_tags: list[str] = Field(default_factory=list)
    scorer: ScorerRef | None = None


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_id: str = Field(pattern=SLUG)
    name: str = Field(min_length=1, max_length=200)
    categories: list[Category] = Field(min_length=1)


class Scorecard(BaseModel):
    """A published, immutable scorecard version."""

    model_config = ConfigDict(extra="forbid")

    scorecard_id: str = Field(pattern=SLUG)
    version: int = Field(ge=1)
    name: str
    groups: list[Group] = Field(min_length=1)
    published_at: datetime | None = None

    def categories(self) -> list[Category]:
        return [c for g in self.groups for c in g.categories]
