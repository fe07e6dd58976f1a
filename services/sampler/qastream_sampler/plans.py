"""Sampling plans: per tenant, versioned, validated.

A plan decides which conversations go to people (purpose `manual`); the tenant's `AutoPolicy` decides which
are scored by AutoQA (purpose `auto`). Plans are immutable values: `edit_plan` returns version n+1.

Priority: a lower number is more important. It orders plans in the reviewer queue and in `explain`, and two
active plans with the same priority must not overlap (`plan_set_problems`). Every plan is its own sampling
design, so a conversation picked by two plans yields one decision per plan, each with its own probability.

Fallback, precisely: a targeted plan with `fallback` promises at least `min_per_period` picks per stratum
(agent, team or the whole tenant) and period. When the period closes, let M be the number of in-scope,
on-time conversations of that stratum that matched a rule at ingest time (or the `new_agent` rule), and
C the other in-scope, on-time ones. If M < min_per_period, the plan also picks the min(min_per_period - M, |C|)
conversations of C with the smallest hash, with rule `fallback` and probability (picked / |C|).
Late feedback never changes M or C, so the fallback does not depend on when feedback was processed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, TypeAdapter, model_validator

from qastream_events.json_input import JsonInput
from qastream_shared.conversation import Channel


class _Strict(JsonInput):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Period(StrEnum):
    day = "day"
    week = "week"
    month = "month"


class StratumBy(StrEnum):
    agent = "agent"
    team = "team"


class FallbackBy(StrEnum):
    agent = "agent"
    team = "team"
    tenant = "tenant"


class Scope(_Strict):
    """Which conversations a plan looks at; `None` means no restriction. Lists match any of their items."""

    channels: list[Channel] | None = Field(default=None, min_length=1)
    tags: list[str] | None = Field(default=None, min_length=1)


# --- targeted rules ---------------------------------------------------------------------------
# Each rule has a stable `name` that decisions record as "the rule that fired".


class CsatAtMost(_Strict):
    kind: Literal["csat_at_most"] = "csat_at_most"
    max: int = Field(ge=1, le=5)

    @property
    def name(self) -> str:
        return f"csat<={self.max}"


class NpsDetractor(_Strict):
    """NPS 0–6, the standard detractor band."""

    kind: Literal["nps_detractor"] = "nps_detractor"

    @property
    def name(self) -> str:
        return "nps_detractor"


class Escalated(_Strict):
    kind: Literal["escalated"] = "escalated"

    @property
    def name(self) -> str:
        return "escalated"


class Reopened(_Strict):
    kind: Literal["reopened"] = "reopened"

    @property
    def name(self) -> str:
        return "reopened"


class NewAgent(_Strict):
    """The conversation happened within `days` of the agent's first conversation the sampler saw."""

    kind: Literal["new_agent"] = "new_agent"
    days: int = Field(ge=1, le=3650)

    @property
    def name(self) -> str:
        return f"new_agent<{self.days}d"


class AutoScoreBelow(_Strict):
    kind: Literal["auto_score_below"] = "auto_score_below"
    threshold: float = Field(ge=0, le=1)

    @property
    def name(self) -> str:
        return f"auto_score<{self.threshold:g}"


class AutoFail(_Strict):
    kind: Literal["auto_fail"] = "auto_fail"

    @property
    def name(self) -> str:
        return "auto_fail"


class NegativeSentiment(_Strict):
    """The AutoQA `sentiment` scorer's rating is below `below` (0–1). Needs the auto review, like late feedback."""

    kind: Literal["negative_sentiment"] = "negative_sentiment"
    below: float = Field(default=0.5, gt=0, le=1)

    @property
    def name(self) -> str:
        return f"sentiment<{self.below:g}"


class PredictedDissatisfied(_Strict):
    """pCSAT's calibrated probability that the customer is dissatisfied is at least `at_least`. Needs the auto
    review, like `negative_sentiment`; a review without a prediction (no customer turn) never matches."""

    kind: Literal["predicted_dissatisfied"] = "predicted_dissatisfied"
    at_least: float = Field(gt=0, le=1)

    @property
    def name(self) -> str:
        return f"p_dissatisfied>={self.at_least:g}"


class HandleTimeAbove(_Strict):
    kind: Literal["handle_time_above"] = "handle_time_above"
    seconds: float = Field(gt=0)

    @property
    def name(self) -> str:
        return f"handle_time>{self.seconds:g}s"


class ChannelIs(_Strict):
    kind: Literal["channel"] = "channel"
    channels: list[Channel] = Field(min_length=1)

    @property
    def name(self) -> str:
        return "channel in " + ",".join(sorted(self.channels))


class HasTag(_Strict):
    kind: Literal["tag"] = "tag"
    tags: list[str] = Field(min_length=1)

    @property
    def name(self) -> str:
        return "tag in " + ",".join(sorted(self.tags))


Rule = Annotated[
    CsatAtMost
    | NpsDetractor
    | Escalated
    | Reopened
    | NewAgent
    | AutoScoreBelow
    | AutoFail
    | NegativeSentiment
    | PredictedDissatisfied
    | HandleTimeAbove
    | ChannelIs
    | HasTag,
    Field(discriminator="kind"),
]


REVIEW_FED = (AutoScoreBelow, AutoFail, NegativeSentiment, PredictedDissatisfied)


class Fallback(_Strict):
    min_per_period: int = Field(ge=0)
    per: FallbackBy = FallbackBy.tenant
    period: Period = Period.week


# --- plans ------------------------------------------------------------------------------------


class _PlanBase(_Strict):
    plan_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    version: int = Field(default=1, ge=1)
    name: str = Field(default="", max_length=200)
    priority: int = Field(default=100, ge=0)
    paused: bool = False
    seed: int = Field(default=0, ge=0)
    purpose: Literal["manual"] = "manual"
    scope: Scope = Scope()
    created_at: datetime | None = None


class RandomPlan(_PlanBase):
    """Bernoulli sampling: each in-scope conversation independently with probability `rate`."""

    kind: Literal["random"] = "random"
    rate: float = Field(ge=0, le=1)


class StratifiedPlan(_PlanBase):
    """`quota` conversations per agent (or team) per period, chosen by smallest hash once the period closes.

    `slots` > 1 releases picks during the period: slot j of m closes with cumulative target floor(quota·j/m),
    short slots carry their remainder forward and the last slot backfills from the whole period, so a stratum
    with at least `quota` on-time conversations gets exactly `quota`. With slots = 1 (default) the sample is a
    simple random sample without replacement of the period and each pick's probability is exactly quota/N.
    """

    kind: Literal["stratified"] = "stratified"
    by: StratumBy = StratumBy.agent
    quota: int = Field(ge=0)
    period: Period = Period.week
    slots: int = Field(default=1, ge=1, le=1000)

    @model_validator(mode="after")
    def _slots_fit_quota(self) -> StratifiedPlan:
        if self.slots > max(self.quota, 1):
            raise ValueError(f"slots ({self.slots}) must not exceed quota ({self.quota})")
        return self


class TargetedPlan(_PlanBase):
    """Picks conversations matching any rule (the first matching rule in list order is recorded).

    With `rate` < 1, a matching conversation is picked with that probability (by hash), to bound volume.
    """

    kind: Literal["targeted"] = "targeted"
    rules: list[Rule] = Field(min_length=1)
    rate: float = Field(default=1.0, gt=0, le=1)
    fallback: Fallback | None = None

    @model_validator(mode="after")
    def _one_source_of_facts(self) -> TargetedPlan:
        # Review facts arrive on qa.reviews, the rest with the conversation on qa.conversations. The two topics
        # interleave differently on every replay, so a plan mixing them could record a different first rule.
        review_fed = {r.kind for r in self.rules if isinstance(r, REVIEW_FED)}
        if review_fed and len(review_fed) < len(self.rules):
            raise ValueError(
                f"rules: {sorted(review_fed)} come from AutoQA reviews and cannot be mixed with rules on the "
                "conversation's own facts in one plan; split them into two plans"
            )
        return self

    @cached_property
    def new_agent_rule(self) -> NewAgent | None:
        return next((r for r in self.rules if isinstance(r, NewAgent)), None)


AnyPlan = RandomPlan | StratifiedPlan | TargetedPlan
PLAN_MODELS = (RandomPlan, StratifiedPlan, TargetedPlan)
Plan = Annotated[AnyPlan, Field(discriminator="kind")]


class AutoPolicy(_Strict):
    """Which conversations AutoQA scores: all by default, or a rate per channel (to bound LLM cost)."""

    version: int = Field(default=1, ge=1)
    default_rate: float = Field(default=1.0, ge=0, le=1)
    channel_rates: dict[Channel, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    seed: int = Field(default=0, ge=0)

    PLAN_ID: ClassVar[str] = "auto-policy"

    def rate(self, channel: str) -> float:
        return self.channel_rates.get(Channel(channel), self.default_rate)


# --- construction and validation --------------------------------------------------------------

_PLAN = TypeAdapter(Plan)


def parse_plan(data: Mapping[str, Any]) -> AnyPlan:
    """Validate a plan body; raises pydantic.ValidationError naming the field (rate, quota, rules.0.foo...)."""
    return _PLAN.validate_python(data)


def edit_plan(current: AnyPlan, changes: Mapping[str, Any]) -> AnyPlan:
    """Version n+1 of a plan with `changes` applied; the plan id and kind cannot change."""
    for fixed in ("plan_id", "kind", "version"):
        if fixed in changes and changes[fixed] != getattr(current, fixed):
            raise ValueError(f"{fixed} cannot be changed by an edit")
    body = {**current.model_dump(mode="json"), **changes, "version": current.version + 1}
    return parse_plan(body)


def _scopes_overlap(a: Scope, b: Scope) -> bool:
    # Tags can co-occur on one conversation, so only disjoint channel sets make two scopes disjoint.
    if a.channels is None or b.channels is None:
        return True
    return bool(set(a.channels) & set(b.channels))


def plan_set_problems(plans: Iterable[AnyPlan]) -> list[str]:
    """Problems in a tenant's set of current plans, each naming the plans involved; empty when valid."""
    problems: list[str] = []
    current = list(plans)
    ids = [p.plan_id for p in current]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"plan_id {dup!r} appears more than once")
    active = sorted((p for p in current if not p.paused), key=lambda p: (p.priority, p.plan_id))
    for i, a in enumerate(active):
        for b in active[i + 1 :]:
            if a.priority == b.priority and _scopes_overlap(a.scope, b.scope):
                problems.append(
                    f"plans {a.plan_id!r} and {b.plan_id!r} overlap (same scope channels) "
                    f"and have the same priority {a.priority}"
                )
    return problems
