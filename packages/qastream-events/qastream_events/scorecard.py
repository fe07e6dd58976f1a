"""Scorecard contract: the shape published on qa.scorecards and stamped on every review."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from qastream_events.json_input import JsonInput

SLUG = r"^[a-z0-9][a-z0-9_\-]{0,63}$"


class ScaleKind(StrEnum):
    binary = "binary"
    three_point = "3-point"
    four_point = "4-point"
    five_point = "5-point"
    points = "points"


_N_POINTS = {ScaleKind.three_point: 3, ScaleKind.four_point: 4, ScaleKind.five_point: 5}


class Scale(JsonInput):
    model_config = ConfigDict(extra="forbid")

    kind: ScaleKind
    # Only the points scale sets its own maximum; n-point scales run 1..n and binary 0..1.
    max_points: int | None = Field(default=None, ge=1, le=1000)

    def bounds(self) -> tuple[int, int] | None:
        """(min, max) chosen values, or None for a points scale without max_points (an empty scale)."""
        if self.kind is ScaleKind.binary:
            return 0, 1
        if self.kind is ScaleKind.points:
            return (0, self.max_points) if self.max_points else None
        return 1, _N_POINTS[self.kind]


class ScorerRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class Category(JsonInput):
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


class Group(JsonInput):
    model_config = ConfigDict(extra="forbid")

    group_id: str = Field(pattern=SLUG)
    name: str = Field(min_length=1, max_length=200)
    categories: list[Category] = Field(min_length=1)


class Scorecard(JsonInput):
    """A published, immutable scorecard version."""

    model_config = ConfigDict(extra="forbid")

    scorecard_id: str = Field(pattern=SLUG)
    version: int = Field(ge=1)
    name: str
    groups: list[Group] = Field(min_length=1)
    published_at: datetime | None = None

    def categories(self) -> list[Category]:
        return [c for g in self.groups for c in g.categories]


class NaMode(StrEnum):
    excluded = "excluded"  # an N/A category drops out of the weighted mean
    passed = "pass"  # an N/A category counts as a full score with its weight


class AutoFailMode(StrEnum):
    zero = "zero"  # a failed critical category zeroes the review score
    flag = "flag"  # the score stands; the review is only flagged auto-failed


class ScoringMode(StrEnum):
    accumulation = "accumulation"
    deduction = "deduction"


class ScoringSettings(JsonInput):
    """A tenant's scoring rules; the engine's behaviour is a pure function of these and the ratings.

    - accumulation: score = Σ(score·weight)/Σ(weight) over the counted categories.
    - deduction: weights are points out of 100. The review starts at 100% and each counted category takes
      off weight·(1 − score) points, floored at 0. Unlike accumulation the weights are absolute: a card
      whose weights sum to less than 100 can never fall to 0 through deductions alone.
    """

    model_config = ConfigDict(extra="forbid")

    pass_mark: float = Field(default=0.8, ge=0, le=1)
    na_mode: NaMode = NaMode.excluded
    auto_fail_mode: AutoFailMode = AutoFailMode.zero
    scoring_mode: ScoringMode = ScoringMode.accumulation
