"""Which conversations a plan's scope and targeted rules match, and the stratum a conversation falls in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qastream_sampler.engine.state import ConversationFacts
from qastream_sampler.plans import (
    AutoFail,
    AutoScoreBelow,
    ChannelIs,
    CsatAtMost,
    Escalated,
    HandleTimeAbove,
    HasTag,
    NegativeSentiment,
    NewAgent,
    NpsDetractor,
    PredictedDissatisfied,
    Reopened,
    Rule,
    Scope,
    TargetedPlan,
)


def in_scope(scope: Scope, facts: ConversationFacts) -> bool:
    if scope.channels is not None and facts.channel not in scope.channels:
        return False
    return scope.tags is None or not facts.tags.isdisjoint(scope.tags)


_MATCHERS: dict[type, Callable[[Any, ConversationFacts], bool]] = {
    CsatAtMost: lambda r, f: f.csat is not None and f.csat <= r.max,
    NpsDetractor: lambda r, f: f.nps is not None and f.nps <= 6,
    Escalated: lambda r, f: f.escalated,
    Reopened: lambda r, f: f.reopened,
    AutoScoreBelow: lambda r, f: f.auto_score is not None and f.auto_score < r.threshold,
    AutoFail: lambda r, f: f.auto_failed,
    NegativeSentiment: lambda r, f: f.sentiment is not None and f.sentiment < r.below,
    PredictedDissatisfied: lambda r, f: f.p_dissatisfied is not None and f.p_dissatisfied >= r.at_least,
    HandleTimeAbove: lambda r, f: f.handle_seconds is not None and f.handle_seconds > r.seconds,
    ChannelIs: lambda r, f: f.channel in r.channels,
    HasTag: lambda r, f: not f.tags.isdisjoint(r.tags),
    NewAgent: lambda r, f: False,  # needs other partitions' facts: decided by `close`
}


def rule_matches(rule: Rule, facts: ConversationFacts) -> bool:
    """Whether a rule holds on the facts known now. `new_agent` is decided by `close` instead."""
    return _MATCHERS[type(rule)](rule, facts)


def first_matching_rule(plan: TargetedPlan, facts: ConversationFacts) -> Rule | None:
    for rule in plan.rules:
        if _MATCHERS[type(rule)](rule, facts):
            return rule
    return None


def stratum_value(by: str, facts: ConversationFacts) -> str | None:
    if by == "agent":
        return facts.agent_id
    if by == "team":
        return facts.team
    return "all"
