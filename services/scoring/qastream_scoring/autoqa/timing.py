"""`timing`: first response, response gaps and handle time from turn timestamps, against thresholds.

Each measure scores 1 at or under its threshold and falls linearly to 0 at `slack`× the threshold:
- first response: the customer's first turn to the agent's first reply after it;
- response gap: the mean wait from a customer turn to the next agent turn (the worst wait is evidence);
- handle time: first to last turn.
The score is the mean of the measures that can be taken. N/A without timestamps or without an agent reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from qastream_scoring.autoqa.base import ConversationView, Finding, Params, clamp, na
from qastream_shared.scorecard import Scale


class TimingParams(Params):
    # Live-chat norms: answer within 30 s; a 15-minute chat is long.
    first_response_s: float | None = Field(default=30, gt=0)
    response_gap_s: float | None = Field(default=30, gt=0)
    handle_s: float | None = Field(default=900, gt=0)
    slack: float = Field(default=4.0, gt=1)


def _measure(value: float, threshold: float, slack: float) -> float:
    return clamp(1 - (value - threshold) / (threshold * (slack - 1)))


def customer_waits(view: ConversationView) -> list[tuple[float, int]]:
    """(seconds, agent turn) per answered customer turn: from its first unanswered turn to the agent's reply."""
    return view.memo("customer_waits", lambda: _customer_waits(view))


def _customer_waits(view: ConversationView) -> list[tuple[float, int]]:
    waits: list[tuple[float, int]] = []
    waiting_since = None
    for i, t in enumerate(view.conversation.turns):
        if t.ts is None:
            continue
        if i in view.customer_set:
            waiting_since = waiting_since or t.ts
        elif i in view.agent_set and waiting_since is not None:
            waits.append(((t.ts - waiting_since).total_seconds(), i))
            waiting_since = None
    return waits


class TimingScorer:
    name = "timing"
    version = "1.0.0"

    def parse(self, params: Mapping[str, Any], scale: Scale) -> TimingParams:
        return TimingParams.model_validate(params)

    def can_fail(self, parsed: TimingParams) -> bool:
        return any(t is not None for t in (parsed.first_response_s, parsed.response_gap_s, parsed.handle_s))

    def score(self, view: ConversationView, parsed: TimingParams) -> Finding:
        if (short := view.too_little()) is not None:
            return short
        waits = customer_waits(view)
        scores: list[float] = []
        evidence: list[int] = []
        if parsed.first_response_s and waits:
            scores.append(_measure(waits[0][0], parsed.first_response_s, parsed.slack))
            evidence.append(waits[0][1])
        if parsed.response_gap_s and waits:
            mean = sum(w for w, _ in waits) / len(waits)
            scores.append(_measure(mean, parsed.response_gap_s, parsed.slack))
            evidence.append(max(waits)[1])
        handle = view.conversation.handle_seconds()
        if parsed.handle_s and handle is not None:
            scores.append(_measure(handle, parsed.handle_s, parsed.slack))
        if not scores:
            return na("no timestamps to time")
        return Finding(
            sum(scores) / len(scores), 0.9, tuple(view.evidence(i) for i in dict.fromkeys(evidence))
        )
