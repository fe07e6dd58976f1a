"""The signals pCSAT combines, each with the turns that show it: what the AutoQA scorers already compute.

Every signal is a number (None where it cannot be taken, e.g. timing without timestamps) from the scorers'
own cues at their default params, so pCSAT does not depend on a tenant's scorecard. Nothing here reads a
conversation id, a template name or a domain word: only the turns' text, roles and timestamps.
- mood: the customer's mood (sentiment scorer, 0..1);
- confirmed: the share of the customer's closing turns that confirm or thank (resolution's cue);
- outcome: the agent's last report, +1 carried out, -1 bad news, 0 neither (resolution's cue);
- bad_news: the share of agent turns delivering bad news (resolution's cue);
- resolved: the resolution scorer's "resolved" score (0..1);
- conduct: the conduct scorer's score (0..1): loops, repeats, frustration, curt or premature closes;
- agent_tone: the sentiment scorer's agent tone (0..1);
- wait: log(1 + mean seconds a customer turn waited for the agent's reply), from timestamps;
- handle: log(1 + handle seconds), from timestamps.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from qastream_scoring.autoqa.base import ConversationView, Scorer
from qastream_scoring.autoqa.conduct import ConductScorer
from qastream_scoring.autoqa.resolution import ResolutionScorer, outcome_cues
from qastream_scoring.autoqa.sentiment import SentimentScorer, agent_tone, customer_mood
from qastream_scoring.autoqa.timing import TimingScorer, customer_waits
from qastream_shared.events import Evidence
from qastream_shared.scorecard import Scale, ScaleKind

SIGNALS = (
    "mood",
    "confirmed",
    "outcome",
    "bad_news",
    "resolved",
    "conduct",
    "agent_tone",
    "wait",
    "handle",
)
_SCALE = Scale(kind=ScaleKind.five_point)  # the scorers' params do not depend on the scale
_RESOLUTION = ResolutionScorer()
_CONDUCT = ConductScorer()
_SENTIMENT = SentimentScorer()
_RESOLVED = _RESOLUTION.parse({"check": "resolved"}, _SCALE)
_CONDUCT_PARAMS = _CONDUCT.parse({}, _SCALE)
_TONE = _SENTIMENT.parse({"customer_weight": 0.0}, _SCALE)
# The scorers whose versions the signals depend on: a fitted model is only valid with these versions.
SCORERS: tuple[Scorer, ...] = (_RESOLUTION, _CONDUCT, _SENTIMENT, TimingScorer())


class Signal(NamedTuple):  # a tuple: nine are built per prediction, and a frozen dataclass builds slower
    value: float | None
    turns: tuple[int, ...] = ()
    note: str | None = None


def scorer_versions() -> dict[str, str]:
    return {s.name: s.version for s in sorted(SCORERS, key=lambda s: s.name)}


def signals(view: ConversationView) -> dict[str, Signal]:
    """Every signal of a conversation with at least one agent turn and one customer turn."""
    mood, mood_turns = customer_mood(view, _TONE.tail)
    cues = outcome_cues(view, _RESOLVED.tail)
    resolved = view.finding(_RESOLUTION, _RESOLVED)
    conduct = view.finding(_CONDUCT, _CONDUCT_PARAMS)
    tone, tone_turns = agent_tone(view, _TONE)
    wait, waited = _mean_wait(view)
    handle = view.conversation.handle_seconds()
    return {
        "mood": Signal(mood, mood_turns),
        "confirmed": Signal(len(cues.confirmed) / len(cues.closing), tuple(cues.confirmed)),
        "outcome": Signal(
            float(cues.outcome),
            tuple(cues.done[-1:] if cues.outcome > 0 else cues.unable[-1:] if cues.outcome < 0 else ()),
        ),
        "bad_news": Signal(len(cues.unable) / len(view.agent), tuple(cues.unable[-2:])),
        "resolved": _of(resolved.fraction, resolved.evidence),
        "conduct": Signal(conduct.fraction, tuple(e.turn for e in conduct.evidence), conduct.note),
        "agent_tone": Signal(tone, tone_turns),
        "wait": Signal(None if wait is None else math.log1p(wait), waited),
        "handle": Signal(None if handle is None else math.log1p(handle)),
    }


def _of(fraction: float | None, evidence: tuple[Evidence, ...]) -> Signal:
    return Signal(fraction, tuple(e.turn for e in evidence))


def _mean_wait(view: ConversationView) -> tuple[float | None, tuple[int, ...]]:
    """Mean seconds a customer waited for a reply, and the reply after the longest wait."""
    waits = customer_waits(view)
    if not waits:
        return None, ()
    return max(0.0, sum(w for w, _ in waits) / len(waits)), (max(waits)[1],)
