"""`resolution`: did the conversation end with the customer's need met? Cue-based, from the text alone.

`check` picks the question:
- "resolved": the outcome the customer was left with, i.e. the agent's last report: the request carried out
  (with no bad news after it) raises the score, bad news last lowers it, and the share of the agent's turns
  that deliver bad news comes off it (a share, so long chats are not punished for their length). Customer
  confirmation and thanks in their closing turns raise it; complaints, repeats, escalation or reopen cues and
  abandonment (the conversation ends on a customer turn nobody answered) lower it. The conversation's own
  `escalated`/`reopened` flags count too.
- "solution_offered": did the agent, after the customer's request, state an answer or next step (half) and
  report it carried out (the other half), rather than only ask questions; saying it cannot help counts against.
- "corrections": a proxy for accuracy: the customer correcting the agent ("no, I said…", "that's wrong",
  "not what I asked") or asking the same thing again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from qastream_scoring.autoqa.base import ConversationView, Finding, Params, clamp, na
from qastream_shared.scorecard import Scale


class Cue:
    """Phrases matched on word boundaries against lowercased text (faster than IGNORECASE; the cues are all
    lowercase), each text's answer cached: agent macros repeat across conversations, and several checks share
    cues. One cache per cue, keyed by the text alone: hashing a compiled pattern hashes its whole program."""

    def __init__(self, *phrases: str) -> None:
        self.pattern = re.compile(r"\b(?:" + "|".join(phrases) + r")\b")
        self.matches = lru_cache(maxsize=65536)(self._search)

    def _search(self, text: str) -> bool:
        return self.pattern.search(text) is not None

    def hits(self, view: ConversationView, turns: list[int]) -> list[int]:
        matches, lower = self.matches, view.lower
        return [i for i in turns if matches(lower[i])]


CONFIRM = Cue(
    r"thanks?",
    r"thank you",
    r"thx",
    r"ty",
    r"great",
    r"perfect",
    r"awesome",
    r"excellent",
    r"wonderful",
    r"fantastic",
    r"appreciate(?:d| it)?",
    r"that(?:'s| is| was) (?:all|it|helpful|great|perfect|fine)",
    r"(?:that|it) works",
    r"works for me",
    r"sounds good",
    r"all set",
    r"solved",
    r"resolved",
    r"fixed",
    r"got it",
    r"helpful",
    r"(?:you'?ve )?been (?:a )?(?:great )?help",
    r"good(?:bye| day| night)?",
    r"bye",
    r"ok(?:ay)?",
    r"cool",
    r"nice",
    r"exactly",
)
COMPLAIN = Cue(
    r"not what i",
    r"that(?:'s| is) (?:wrong|not right|incorrect)",
    r"wrong",
    r"incorrect",
    r"useless",
    r"ridiculous",
    r"terrible",
    r"horrible",
    r"awful",
    r"frustrat\w*",
    r"annoy\w*",
    r"angry",
    r"upset",
    r"unacceptable",
    r"disappoint\w*",
    r"never ?mind",
    r"forget it",
    r"waste of",
    r"doesn'?t work",
    r"didn'?t work",
    r"not working",
    r"still (?:not|no|doesn'?t|don'?t|haven'?t|waiting)",
    r"again",
    r"i (?:already|just) (?:said|told|asked|gave)",
    r"i said",
    r"are you (?:even )?listening",
    r"confus\w*",
    r"not helpful",
    r"no help",
    r"anyone there",
    r"are you there",
    r"stupid",
    r"wtf",
    r"seriously",
    r"come on",
    r"hurry",
    r"taking (?:so|too) long",
    r"why (?:is|are|did|can'?t)",
)
ESCALATE = Cue(
    r"supervisor",
    r"manager",
    r"escalat\w*",
    r"complaint",
    r"speak to (?:a |an )?(?:human|person|someone)",
    r"real person",
    r"cancel my",
    r"reopen\w*",
    r"same (?:problem|issue)",
    r"called before",
)
# The agent delivering bad news: what it was asked for cannot be done.
UNABLE = Cue(
    r"sorry(?! to hear| for (?:the|your) (?:wait|delay|inconvenience))",
    r"unfortunately",
    r"apologi[sz]e",
    r"unable to",
    r"can ?not",
    r"can'?t",
    r"couldn'?t",
    r"could not",
    r"not (?:be )?(?:able|available|possible)",
    r"unavailable",
    r"no (?:\w+ )?(?:available|availability|openings?|results?|match\w*)",
    r"(?:isn'?t|aren'?t|wasn'?t) available",
    r"(?:fully|already) booked",
    r"sold out",
    r"(?:did not|didn'?t) find",
    r"no longer",
    r"not supported",
    r"(?:was|were|been) (?:declined|denied|rejected)",
    r"failed",
)
# The agent reporting the request as carried out.
DONE = Cue(
    r"booked",
    r"reserved",
    r"confirmed",
    r"scheduled",
    r"processed",
    r"refunded",
    r"cancel+ed",
    r"ordered",
    r"placed",
    r"(?:has|have) been (?:sent|updated|changed|issued|set up|fixed|resolved|added|created)",
    r"all set",
    r"taken care of",
    r"is on (?:its|the) way",
    r"successfully",
)
OUTCOME = Cue(
    r"(?:i|we)(?:'ve| have)? (?:found|booked|reserved|scheduled|confirmed|sent|processed|updated|changed|"
    r"cancel+ed|refunded|issued|placed|arranged|ordered|set up|fixed|resolved|added|created|checked)",
    r"here (?:is|are)",
    r"here'?s",
    r"is (?:confirmed|booked|reserved|scheduled|available|ready|on (?:its|the) way)",
    r"(?:you can|you could|you should|you'?ll|you will|try)",
    r"your \w+ (?:is|has been|will be)",
    r"(?:i|we) (?:can|will|'ll) ",
    r"the answer is",
    r"it (?:is|will be) ",
    r"there (?:is|are) ",
)

CUES = (CONFIRM, COMPLAIN, ESCALATE, UNABLE, DONE, OUTCOME)


class ResolutionParams(Params):
    check: Literal["resolved", "solution_offered", "corrections"] = "resolved"
    tail: int = 2


class ResolutionScorer:
    name = "resolution"
    version = "1.1.0"

    def parse(self, params: Mapping[str, Any], scale: Scale) -> ResolutionParams:
        return ResolutionParams.model_validate(params)

    def can_fail(self, parsed: ResolutionParams) -> bool:
        return True

    def score(self, view: ConversationView, parsed: ResolutionParams) -> Finding:
        if (short := view.too_little()) is not None:
            return short
        if parsed.check == "solution_offered":
            return _solution_offered(view)
        if parsed.check == "corrections":
            return _corrections(view)
        return _resolved(view, parsed.tail)


@dataclass(frozen=True, slots=True)
class OutcomeCues:
    """The cues `resolved` weighs, each as the turns that show it; pCSAT reads them too."""

    closing: list[int]  # the customer's last `tail` turns
    confirmed: list[int]
    complained: list[int]
    escalated: list[int]
    unable: list[int]  # agent turns delivering bad news
    done: list[int]  # agent turns reporting the request carried out
    outcome: int  # +1 carried out, -1 bad news, 0 neither: the agent's last report
    abandoned: bool  # the conversation ends on a customer turn nobody answered


def outcome_cues(view: ConversationView, tail: int = 2) -> OutcomeCues:
    """Needs an agent turn and a customer turn. Computed once per view and tail."""
    return view.memo(("outcome_cues", tail), lambda: _outcome_cues(view, tail))


def _outcome_cues(view: ConversationView, tail: int) -> OutcomeCues:
    closing = view.customer[-tail:]
    unable = UNABLE.hits(view, view.agent)
    done = DONE.hits(view, view.agent)
    # +1 carried out, −1 bad news, 0 neither: a success after a refusal still ends well, and the reverse not.
    # A turn that is both ("it could not be booked") is bad news: done must come strictly after.
    outcome = 0 if not (done or unable) else 1 if done and (not unable or done[-1] > unable[-1]) else -1
    return OutcomeCues(
        closing=closing,
        confirmed=CONFIRM.hits(view, closing),
        # The opening states the problem; complaints count once the agent has answered.
        complained=COMPLAIN.hits(view, [i for i in view.customer if i > view.agent[0]]),
        escalated=ESCALATE.hits(view, view.customer),
        unable=unable,
        done=done,
        outcome=outcome,
        abandoned=view.customer[-1] > view.agent[-1],
    )


def _resolved(view: ConversationView, tail: int) -> Finding:
    conv = view.conversation
    c = outcome_cues(view, tail)
    score = (
        0.55 + 0.15 * (len(c.confirmed) / len(c.closing)) + 0.3 * c.outcome - len(c.unable) / len(view.agent)
    )
    score -= 0.1 * min(len(c.complained), 3)
    score -= 0.3 * (bool(c.escalated) or conv.escalated) + 0.3 * conv.reopened + 0.4 * c.abandoned
    evidence = [*c.confirmed, *c.done[-1:], *c.complained[:2], *c.escalated[:1], *c.unable[-2:]]
    if c.abandoned:
        evidence.append(view.customer[-1])
    return Finding(clamp(score), 0.6, tuple(view.evidence(i) for i in sorted(set(evidence))))


def _solution_offered(view: ConversationView) -> Finding:
    after_request = [i for i in view.agent if i > view.customer[0]]
    if not after_request:
        return Finding(0.0, 0.7, (view.evidence(view.customer[0]),), "no agent turn after the request")
    unable = UNABLE.hits(view, after_request)
    offers = [i for i in OUTCOME.hits(view, after_request) if i not in unable]
    done = DONE.hits(view, after_request)
    score = clamp(0.5 * bool(offers) + 0.5 * bool(done) - 0.25 * min(len(unable), 2))
    return Finding(score, 0.5, tuple(view.evidence(i) for i in sorted({*offers[:1], *done[:1], *unable[:2]})))


def _corrections(view: ConversationView) -> Finding:
    if len(view.customer) < 2:
        return na("one customer turn: nothing to correct")
    later = view.customer[1:]
    corrected = COMPLAIN.hits(view, later)
    seen: set[str] = set()
    repeats = []
    for i in view.customer:
        key = " ".join(view.words[i])
        if len(key) > 15 and key in seen:
            repeats.append(i)
        seen.add(key)
    n = len(set(corrected) | set(repeats))
    return Finding(
        clamp(1 - 0.34 * n), 0.5, tuple(view.evidence(i) for i in sorted({*corrected, *repeats})[:3])
    )
