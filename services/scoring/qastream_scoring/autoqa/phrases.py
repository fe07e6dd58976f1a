"""`phrases`: required and forbidden phrases or regexes in the agent's turns (greeting, closing, disclosures).

Params:
- `required` / `required_regex`: at least one must appear (`require_all`: every one must) in the window;
- `forbidden` / `forbidden_regex`: any hit anywhere in the agent's turns scores 0, whatever else;
- `window`: "first" or "last" `turns` agent turns, or "all".
- `target: "customer_name"` instead checks that the agent addresses the customer by the name they gave
  (after "my name is …", "I'm …", or as the answer to the agent asking for it); N/A when no name was given.
Score: the share of required items found (1 without required items), 0 on any forbidden hit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from qastream_scoring.autoqa.base import ConversationView, Finding, Params, na, occurs, phrase_pattern
from qastream_shared.scorecard import Scale


class PhrasesParams(Params):
    target: Literal["phrases", "customer_name"] = "phrases"
    required: list[str] = Field(default_factory=list)
    required_regex: list[str] = Field(default_factory=list)
    require_all: bool = False
    forbidden: list[str] = Field(default_factory=list)
    forbidden_regex: list[str] = Field(default_factory=list)
    window: Literal["first", "last", "all"] = "all"
    turns: int = Field(default=2, ge=1, le=100)

    @field_validator("required_regex", "forbidden_regex")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        for r in v:
            try:
                re.compile(r)
            except re.error as exc:
                raise ValueError(f"invalid regex {r!r}: {exc}") from None
        return v


@dataclass(frozen=True, slots=True)
class _Compiled:
    params: PhrasesParams
    required: tuple[re.Pattern[str], ...]
    forbidden: re.Pattern[str] | None


_NAME_INTRO = re.compile(
    r"\b(?:my name is|my name's|name is|this is|i am|i'm|under(?: the name)?)\s+([A-Z][a-z]{1,20})\b"
)
_ASKS_NAME = re.compile(r"\byour (?:full |first |last )?name\b", re.IGNORECASE)
_LONE_NAME = re.compile(r"^\s*(?:it'?s\s+|i'?m\s+)?([A-Za-z][a-z]{1,20})(?:\s+[A-Za-z][a-z]{1,20})?\W*$")
_NOT_NAMES = frozenset(
    {"yes", "no", "ok", "okay", "sure", "hello", "hi", "thanks", "hey", "sorry", "not", "looking"}
)


class PhrasesScorer:
    name = "phrases"
    version = "1.0.0"

    def parse(self, params: Mapping[str, Any], scale: Scale) -> _Compiled:
        p = PhrasesParams.model_validate(params)
        if p.require_all:
            each = [phrase_pattern([x]) for x in p.required] + [
                phrase_pattern((), [r]) for r in p.required_regex
            ]
        else:
            each = [phrase_pattern(p.required, p.required_regex)]
        required = tuple(pat for pat in each if pat is not None)
        return _Compiled(p, required, phrase_pattern(p.forbidden, p.forbidden_regex))

    def can_fail(self, parsed: _Compiled) -> bool:
        return (
            parsed.params.target == "customer_name" or bool(parsed.required) or parsed.forbidden is not None
        )

    def score(self, view: ConversationView, parsed: _Compiled) -> Finding:
        if (short := view.too_little()) is not None:
            return short
        if parsed.params.target == "customer_name":
            return _customer_name(view)
        p = parsed.params
        if parsed.forbidden is not None:
            forbidden = parsed.forbidden
            hit = next((i for i in view.agent if occurs(forbidden, view.texts[i])), None)
            if hit is not None:
                return Finding(0.0, 0.9, (view.evidence(hit),), "forbidden phrase")
        if not parsed.required:
            return Finding(1.0, 0.6, (), "no forbidden phrase")
        window = view.agent
        if p.window == "first":
            window = window[: p.turns]
        elif p.window == "last":
            window = window[-p.turns :]
        evidence = []
        for pat in parsed.required:
            hit = next((i for i in window if occurs(pat, view.texts[i])), None)
            if hit is not None:
                evidence.append(view.evidence(hit))
        found = len(evidence) / len(parsed.required)
        return Finding(found, 0.8 if found in (0.0, 1.0) else 0.6, tuple(evidence))


def _given_name(view: ConversationView) -> tuple[int, str] | None:
    for i in view.customer:
        text = view.texts[i]
        m = _NAME_INTRO.search(text)
        if m and m.group(1).lower() not in _NOT_NAMES:
            return i, m.group(1)
        asked = i > 0 and view.roles[i - 1] != view.roles[i] and _ASKS_NAME.search(view.texts[i - 1])
        lone = _LONE_NAME.match(text) if asked else None
        if lone and lone.group(1).lower() not in _NOT_NAMES:
            return i, lone.group(1)
    return None


def _customer_name(view: ConversationView) -> Finding:
    given = _given_name(view)
    if given is None:
        return na("the customer gave no name")
    at, name = given
    pat = re.compile(r"\b" + re.escape(name) + r"\b", re.IGNORECASE)
    used = next((i for i in view.agent if i > at and pat.search(view.texts[i])), None)
    if used is None:
        return Finding(0.0, 0.6, (view.evidence(at),), f"name {name!r} never used")
    return Finding(1.0, 0.8, (view.evidence(at), view.evidence(used)))
