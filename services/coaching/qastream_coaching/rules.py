"""Coaching rules: a trigger over an agent's review history, and the task it opens. Pure (no I/O).

A tenant's rules are versioned like sampling plans: an edit stores version n+1 and never changes an earlier
one; tasks and alerts record the rule version that fired.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from qastream_events.json_input import JsonInput
from qastream_shared.scorecard import SLUG


class Trigger(StrEnum):
    below_pass_mark = "below_pass_mark"  # a review scored below the pass mark
    auto_fail = "auto_fail"  # a review auto-failed (a critical category missed)
    category_failures = "category_failures"  # the same category failed k times in n days
    iqs_drop = "iqs_drop"  # the rolling 7-day IQS fell by more than x points week over week
    dispute_rejections = "dispute_rejections"  # k disputes on the same category rejected in n days
    kudos = "kudos"  # an excellent review


# Triggers a single category is named by (the rule's own, or the failing one).
CATEGORY_TRIGGERS = frozenset({Trigger.category_failures, Trigger.dispute_rejections})
POSITIVE = frozenset({Trigger.kudos})


class Rule(JsonInput):
    model_config = ConfigDict(extra="forbid")

    rule_id: str = Field(pattern=SLUG)
    version: int = Field(default=1, ge=1)
    trigger: Trigger
    title: str = Field(min_length=1, max_length=200)  # the task's text
    description: str = Field(default="", max_length=2000)
    # category_failures / dispute_rejections: the category watched (None: each category on its own);
    # kudos / below_pass_mark: optional focus category.
    category_id: str | None = Field(default=None, pattern=SLUG)
    k: int = Field(default=3, ge=1, le=1000)
    window_days: int = Field(default=30, ge=1, le=365)
    # A category counts as failed below this category score (0..1).
    fail_below: float = Field(default=0.5, gt=0, le=1)
    # below_pass_mark: None uses the review's own `passed` (the tenant's pass mark in scoring).
    pass_mark: float | None = Field(default=None, gt=0, le=1)
    # iqs_drop: points on the 0-100 scale, and the fewest reviews each week needs to count.
    drop_points: float = Field(default=10.0, gt=0, le=100)
    min_reviews: int = Field(default=3, ge=1, le=1000)
    # kudos: the review score from which a review is excellent.
    excellent_at: float = Field(default=0.95, gt=0, le=1)
    # AutoQA-only evidence opens the task as "needs confirmation" (a lead confirms before the agent sees it).
    requires_confirmation: bool = False
    # Also raise a RiskAlertRaised when the rule fires.
    alert: bool = False
    due_days: int = Field(default=7, ge=1, le=365)
    # Reviews before and after a completed task that its impact compares.
    impact_reviews: int = Field(default=10, ge=2, le=200)
    paused: bool = False

    @model_validator(mode="after")
    def _default_k(self) -> Rule:
        if self.trigger is Trigger.dispute_rejections and "k" not in self.model_fields_set:
            self.k = 2  # "rejected twice"
        return self


class InvalidRule(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_rule(rule: Rule, known_categories: Collection[str]) -> None:
    """InvalidRule naming the field, for what the model alone cannot judge.

    A rule may only watch a category some scorecard or review of the tenant has; the whole-review triggers
    take no category (their task gets the review's weakest one).
    """
    if rule.category_id is None:
        return
    if rule.trigger not in CATEGORY_TRIGGERS | POSITIVE:
        raise InvalidRule("category_id", f"not used by trigger {rule.trigger.value}")
    if rule.category_id not in known_categories:
        raise InvalidRule("category_id", f"unknown category {rule.category_id!r} in this tenant")


def edit_rule(current: Rule, changes: Mapping[str, Any]) -> Rule:
    """Version n+1 with `changes` applied; the rule id, trigger and version cannot change."""
    for fixed in ("rule_id", "trigger", "version"):
        if fixed in changes and changes[fixed] != getattr(current, fixed):
            raise InvalidRule(fixed, "cannot be changed by an edit")
    body = {**current.model_dump(mode="json", exclude_unset=False), **changes, "version": current.version + 1}
    return Rule.model_validate(body)
