"""`sentiment`: lexicon-based (VADER) customer mood and agent tone.

- customer mood: where the customer ends, and how warmly they took part, around the scale's midpoint. 0.5
  + 0.5·end when end < 0 (a customer who ends furious, -1, is at 0), else 0.5 + 0.2·end, where end is the
  mean compound of their last `tail` turns; + 0.4·the share of their replies to the agent (turns after its
  first) that show appreciation (thanks, praise, or an upbeat exclamation); + 0.1·min(upbeat turns, 2), an
  upbeat turn being one with "!" that VADER does not read as negative; clamped to 0..1. A customer who
  ends neutral without thanks meets expectations (0.5) rather than failing them: most satisfied customers
  say nothing, so the upper half is earned by appreciation and the lower half by a sour ending.
  Appreciation is what satisfied customers volunteer; its absence says more than the negative words of a
  customer venting about the situation, which VADER cannot tell from anger at the agent.
- agent tone: 1 for neutral-or-warm agent turns; each agent turn below `rude_below` compound costs
  `rude_penalty`. Empathy is judged where it is due: after an upset customer turn (below `rude_below`), an
  agent reply with an apology or empathy phrase earns `empathy_bonus`, a reply without one costs it.
`customer_weight` blends the two (1 = mood only, 0 = tone only).
VADER scores (`vader.compound`, vaderSentiment's own figure computed faster) are cached by text (agent macros
repeat, and no turn is scored twice), and the "below" checks score only the turns that `vader.below`'s gate
cannot rule out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import Field

from qastream_scoring.autoqa import vader
from qastream_scoring.autoqa.base import ConversationView, Finding, Params, clamp
from qastream_shared.scorecard import Scale

APPRECIATION = re.compile(
    r"\b(?:thanks?|thank you|thx|ty|appreciate\w*|grateful|great|perfect|awesome|excellent|wonderful|"
    r"fantastic|amazing|lovely|helpful|nice|cool|sweet|brilliant)\b"
)  # matched against lowercased text
EMPATHY = re.compile(
    r"\b(?:sorry|apologi[sz]e|apologies|i understand|i see how|that must be|i can imagine|"
    r"my pleasure|happy to help|glad to help|no problem|thank you for your patience|i appreciate)\b"
)  # matched against lowercased text


class SentimentParams(Params):
    customer_weight: float = Field(default=0.5, ge=0, le=1)
    tail: int = Field(default=2, ge=1, le=10)
    rude_below: float = Field(default=-0.3, ge=-1, le=0)
    rude_penalty: float = Field(default=0.5, ge=0, le=1)
    empathy_bonus: float = Field(default=0.1, ge=0, le=1)


@lru_cache(maxsize=65536)
def empathic(lower: str) -> bool:
    # Cached by text: only agent turns are asked, and agent macros repeat across conversations.
    return EMPATHY.search(lower) is not None


def _upbeat(view: ConversationView, turn: int) -> bool:
    return "!" in view.texts[turn] and not vader.below(view, turn, 0.0)


def customer_mood(view: ConversationView, tail: int) -> tuple[float, tuple[int, ...]]:
    """The customer part of the score and its evidence; needs an agent turn and a customer turn.
    Computed once per view and tail."""
    return view.memo(("customer_mood", tail), lambda: _customer_mood(view, tail))


def _customer_mood(view: ConversationView, tail: int) -> tuple[float, tuple[int, ...]]:
    turns = view.customer
    last = turns[-tail:]
    end = sum(vader.compound(view.texts[i]) for i in last) / len(last)
    # Replies to the agent: the opening request is about the problem, not about the service.
    replies = [i for i in turns if i > view.agent[0]] or last
    upbeat = {i for i in turns if _upbeat(view, i)}
    warm = [i for i in replies if i in upbeat or APPRECIATION.search(view.lower[i])]
    ending = 0.5 * end if end < 0 else 0.2 * end
    score = clamp(0.5 + ending + 0.4 * len(warm) / len(replies) + 0.1 * min(len(upbeat), 2))
    return score, (*warm[:2], *last)


class SentimentScorer:
    name = "sentiment"
    version = "1.3.0"

    def parse(self, params: Mapping[str, Any], scale: Scale) -> SentimentParams:
        return SentimentParams.model_validate(params)

    def can_fail(self, parsed: SentimentParams) -> bool:
        return parsed.customer_weight > 0 or parsed.rude_penalty > 0

    def score(self, view: ConversationView, parsed: SentimentParams) -> Finding:
        if (short := view.too_little()) is not None:
            return short
        w = parsed.customer_weight
        parts: list[tuple[float, float]] = []
        evidence: list[int] = []
        if w > 0:
            mood, mood_evidence = customer_mood(view, parsed.tail)
            parts.append((w, mood))
            evidence += mood_evidence
        if w < 1:
            tone, tone_evidence = agent_tone(view, parsed)
            parts.append((1 - w, tone))
            evidence += tone_evidence
        fraction = sum(wt * s for wt, s in parts) / sum(wt for wt, _ in parts)
        return Finding(fraction, 0.6, tuple(view.evidence(i) for i in dict.fromkeys(evidence)))


def agent_tone(view: ConversationView, parsed: SentimentParams) -> tuple[float, tuple[int, ...]]:
    """The agent part of the score and its evidence turns, each once; needs an agent turn and a customer turn.
    Computed once per view and the params it reads: pCSAT takes its tone signal from here, without the
    scorer's quotes."""
    key = ("agent_tone", parsed.rude_below, parsed.rude_penalty, parsed.empathy_bonus)
    return view.memo(key, lambda: _agent_tone(view, parsed))


def _agent_tone(view: ConversationView, parsed: SentimentParams) -> tuple[float, tuple[int, ...]]:
    tone = 1.0
    evidence: list[int] = []
    upset_at: int | None = None  # the customer turn still waiting for an empathic answer
    answered = missed = 0
    last_reply = view.agent[-1]
    for i in sorted((*view.agent, *view.customer)):
        if i in view.customer_set:
            # A customer turn after the agent's last reply is never answered: its mood cannot count here.
            if upset_at is None and i < last_reply and vader.below(view, i, parsed.rude_below):
                upset_at = i
            continue
        if empathic(view.lower[i]):
            if upset_at is not None:
                answered += 1
                evidence += [upset_at, i]
                upset_at = None
            continue  # an apology with bad news reads negative to VADER but is not rude
        if vader.below(view, i, parsed.rude_below):
            tone -= parsed.rude_penalty
            evidence.append(i)
        if upset_at is not None:
            missed += 1
            evidence.append(upset_at)
            upset_at = None
    tone += parsed.empathy_bonus * (min(answered, 2) - min(missed, 2))
    return clamp(tone), tuple(dict.fromkeys(evidence[:4]))
