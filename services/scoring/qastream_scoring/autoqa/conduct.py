"""`conduct`: how the exchange went, from general customer-service cues in the text alone.

Each cue counts its hits; the score is 1 − Σ penalty[cue]·min(hits, `max_hits`), clamped to 0..1:
- agent_loop: an agent turn near-identical to the agent's previous one (the agent is stuck repeating itself);
- customer_repeat: a customer turn near-identical to an earlier one of theirs (they were not heard);
- customer_frustration: a customer turn, after the agent's first reply, with frustration markers (profanity,
  insults, "ridiculous", "useless", "I already told you", "what?", "!!", "?!", shouting in capitals);
- curt_reply: an agent reply of at most `curt_words` words with no courtesy in it ("time", "name?");
- premature_close: the agent says goodbye and the customer's answer asks a question or does not close (no
  thanks, goodbye or bare acknowledgement): they were not done;
- sloppy_writing: counts the agent's share of turns that start in lower case or end without punctuation,
  so its penalty is per share, not per hit.
Near-identical means a token-set Jaccard similarity of at least `similarity` between turns of 3+ tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from qastream_scoring.autoqa.base import ConversationView, Finding, Params, clamp
from qastream_shared.scorecard import Scale

Cue = Literal[
    "agent_loop", "customer_repeat", "customer_frustration", "curt_reply", "premature_close", "sloppy_writing"
]
DEFAULT_PENALTIES: dict[Cue, float] = {
    "agent_loop": 0.2,
    "customer_repeat": 0.3,
    "customer_frustration": 0.1,
    "curt_reply": 0.2,
    "premature_close": 0.2,
    "sloppy_writing": 0.5,
}

# Matched against lowercased text.
FRUSTRATION = re.compile(
    r"\b(?:ridiculous|useless|pointless|stupid|idiot\w*|dumb|incompetent|wtf|damn\w*|hell|crap|shit\w*|"
    r"fuck\w*|terrible|horrible|awful|annoy\w*|frustrat\w*|seriously|come on|hurry|unacceptable|"
    r"not what i (?:said|asked|wanted)|that'?s not what|i (?:already|just) (?:said|told|asked|gave)|"
    r"are you (?:even )?listening|what\?|are you (?:a )?(?:bot|robot|kidding)|waste of (?:my )?time)"
    r"|!!|\?!|!\?"
)
_SHOUT = re.compile(r"\b[A-Z]{4,}\b")  # four letters: skips "I", "OK", "USA", "ID"
COURTESY = re.compile(
    r"\b(?:please|thanks?|thank you|sorry|welcome|hello|hi|hey|bye|goodbye|great|sure|of course|certainly|"
    r"ok(?:ay)?|glad|happy|alright|no problem)\b"
)

GOODBYE = re.compile(r"\b(?:good ?bye|bye)\b")  # lowercased, like the patterns above
# A reply that closes too: thanks, a goodbye, an acknowledgement ("Thanks, bye!", "ok, take care").
CLOSES = re.compile(
    r"\b(?:thanks?|thank you|thx|ty|appreciate\w*|good ?bye|bye|take care|later|see you|cheers|have a (?:nice|"
    r"good|great) \w+|you too|that'?s (?:all|it))\b|^\W*(?:ok(?:ay)?|alright\w*|sure|nice|great|cool|no|will do)\W*$"
)


class ConductParams(Params):
    penalties: dict[Cue, float] = Field(default_factory=lambda: dict(DEFAULT_PENALTIES))
    max_hits: int = Field(default=3, ge=1, le=20)
    similarity: float = Field(default=0.8, gt=0, le=1)
    curt_words: int = Field(default=3, ge=1, le=10)


@dataclass(frozen=True, slots=True)
class _Hits:
    turns: tuple[int, ...]
    count: float


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b|, the union's size counted rather than the union built."""
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


def near_repeats(view: ConversationView, turns: list[int], similarity: float, previous_only: bool) -> _Hits:
    """The turns of 3+ tokens whose token-set Jaccard similarity to an earlier one of `turns` (the previous one
    only, or any) is at least `similarity` (bench.pcsat_candidates asks it of the agent's questions too)."""
    sets = view.token_sets
    hits = []
    for k, i in enumerate(turns):
        s = sets[i]
        n = len(s)
        if n < 3:
            continue
        for j in turns[k - 1 : k] if previous_only else turns[:k]:
            t = sets[j]
            m = len(t)
            # Jaccard ≤ min/max of the sizes: skip the set algebra for pairs whose sizes already rule it out.
            if m >= 3 and similarity * max(n, m) <= min(n, m) and jaccard(s, t) >= similarity:
                hits.append(i)
                break
    return _Hits(tuple(hits), len(hits))


def _frustration(view: ConversationView) -> _Hits:
    first_reply = view.agent[0]
    hits = tuple(
        i
        for i in view.customer
        if i > first_reply and (FRUSTRATION.search(view.lower[i]) or _SHOUT.search(view.texts[i]))
    )
    return _Hits(hits, len(hits))


def _curt(view: ConversationView, max_words: int) -> _Hits:
    hits = tuple(
        i for i in view.agent if len(view.words[i]) <= max_words and not COURTESY.search(view.lower[i])
    )
    return _Hits(hits, len(hits))


def _premature_close(view: ConversationView) -> _Hits:
    hits = tuple(
        i + 1
        for i in view.agent
        if i + 1 in view.customer_set
        and GOODBYE.search(view.lower[i])
        and ("?" in view.texts[i + 1] or not CLOSES.search(view.lower[i + 1]))
    )
    return _Hits(hits, len(hits))


def _sloppy(view: ConversationView) -> _Hits:
    hits = []
    for i in view.agent:
        text = view.texts[i].strip()
        if text[0].islower() or text[-1].isalnum():
            hits.append(i)
    return _Hits(tuple(hits), len(hits) / len(view.agent))


class ConductScorer:
    name = "conduct"
    version = "1.1.0"

    def parse(self, params: Mapping[str, Any], scale: Scale) -> ConductParams:
        return ConductParams.model_validate(params)

    def can_fail(self, parsed: ConductParams) -> bool:
        return any(p > 0 for p in parsed.penalties.values())

    def score(self, view: ConversationView, parsed: ConductParams) -> Finding:
        if (short := view.too_little()) is not None:
            return short
        penalties = parsed.penalties
        cues: dict[Cue, _Hits] = {}
        if penalties.get("agent_loop"):
            cues["agent_loop"] = near_repeats(view, view.agent, parsed.similarity, previous_only=True)
        if penalties.get("customer_repeat"):
            cues["customer_repeat"] = near_repeats(
                view, view.customer, parsed.similarity, previous_only=False
            )
        if penalties.get("customer_frustration"):
            cues["customer_frustration"] = _frustration(view)
        if penalties.get("curt_reply"):
            cues["curt_reply"] = _curt(view, parsed.curt_words)
        if penalties.get("premature_close"):
            cues["premature_close"] = _premature_close(view)
        if penalties.get("sloppy_writing"):
            cues["sloppy_writing"] = _sloppy(view)
        lost = sum(penalties[c] * min(h.count, parsed.max_hits) for c, h in cues.items())
        found = [c for c, h in cues.items() if h.turns]
        evidence = sorted({i for c in found for i in cues[c].turns[:2]})
        note = ", ".join(f"{c} ×{len(cues[c].turns)}" for c in found) or None
        return Finding(clamp(1 - lost), 0.5, tuple(view.evidence(i) for i in evidence[:6]), note)
