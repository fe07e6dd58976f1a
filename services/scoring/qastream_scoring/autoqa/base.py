"""What every AutoQA scorer is: a named, versioned, pure function of a conversation and its params."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from qastream_shared.conversation import Conversation, Role
from qastream_shared.events import Evidence
from qastream_shared.scorecard import Scale

QUOTE_CHARS = 120
T = TypeVar("T")
_WORD = re.compile(r"[a-z']+")
_TOKEN = re.compile(r"[a-z0-9']+")


@lru_cache(maxsize=65536)
def word_runs(lower: str) -> tuple[str, ...]:
    """A turn's runs of letters and apostrophes, in order; cached by text, as `token_set` is."""
    return tuple(_WORD.findall(lower))


@lru_cache(maxsize=65536)
def token_set(lower: str) -> frozenset[str]:
    """A turn's distinct words and numbers. Cached by text: agent macros repeat across conversations, and a
    frozenset can be shared by every view that holds the same text."""
    return frozenset(_TOKEN.findall(lower))


# Whether a tenant's pattern occurs in an agent text, keyed by the pattern's source and flags and the text: a
# scorecard's phrase checks search every agent turn, and agent macros repeat across conversations. Keyed by the
# source, not the compiled pattern, whose hash is its whole program. One bounded cache for every tenant's
# patterns, emptied when full.
_OCCURS: dict[tuple[str, int, str], bool] = {}
_OCCURS_MAX = 65536


def occurs(pattern: re.Pattern[str], text: str) -> bool:
    """`pattern.search(text) is not None`, each (pattern, text) searched once."""
    key = (pattern.pattern, pattern.flags, text)
    hit = _OCCURS.get(key)
    if hit is None:
        if len(_OCCURS) >= _OCCURS_MAX:
            _OCCURS.clear()
        hit = _OCCURS[key] = pattern.search(text) is not None
    return hit


def forget_occurrences() -> None:
    """Empties `occurs`'s cache (bench.scoring starts each in-process pass cold, as a new process)."""
    _OCCURS.clear()


@dataclass(frozen=True, slots=True)
class Finding:
    """A scorer's answer: a 0..1 fraction of the category's scale, or None for N/A (with the reason)."""

    fraction: float | None
    confidence: float
    evidence: tuple[Evidence, ...] = ()
    note: str | None = None


# params == other for pairs of parsed params seen before, both held so their ids stay theirs: parsed params
# are immutable, and comparing pydantic models field by field cost more than the lookup, on every conversation
# (pCSAT asks for findings with its own params objects, equal to the scorecard's).
_EQUAL: dict[tuple[int, int], tuple[Any, Any, bool]] = {}
_EQUAL_MAX = 4096


def _equal(params: Any, other: Any) -> bool:
    known = _EQUAL.get((id(params), id(other)))
    if known is None:
        if len(_EQUAL) >= _EQUAL_MAX:
            _EQUAL.clear()
        known = _EQUAL[id(params), id(other)] = (params, other, params == other)
    return known[2]


def na(reason: str) -> Finding:
    return Finding(fraction=None, confidence=1.0, note=reason)


class ConversationView:
    """One conversation, pre-digested once and shared by every scorer that rates it."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        turns = conversation.turns
        self.texts = [t.text for t in turns]
        self.lower = [t.text.lower() for t in turns]
        self.roles = [t.role for t in turns]
        self.agent = [i for i, r in enumerate(self.roles) if r is Role.agent and self.texts[i].strip()]
        self.customer = [i for i, r in enumerate(self.roles) if r is Role.customer and self.texts[i].strip()]
        self.agent_set = frozenset(self.agent)
        self.customer_set = frozenset(self.customer)
        # What scorers and pCSAT share about this conversation, computed once: see `memo` and `finding`.
        self._memo: dict[Hashable, Any] = {}
        self._findings: dict[str, list[tuple[Any, Finding]]] = {}
        self._evidence: dict[int, Evidence] = {}

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """compute() once per view and key; for pure functions of the conversation shared by several readers."""
        try:
            found: T = self._memo[key]
        except KeyError:
            found = self._memo[key] = compute()
        return found

    def finding(self, scorer: Scorer, parsed: Any) -> Finding:
        """scorer.score(self, parsed), once per equal params: pCSAT reuses what the scorecard's categories found.

        Params are compared by equality, the same object first (parsed params are frozen pydantic models or
        slotted dataclasses, some holding dicts, so not hashable).
        """
        seen = self._findings.setdefault(scorer.name, [])
        for params, found in seen:
            if params is parsed:
                return found
        for params, found in seen:
            if _equal(params, parsed):
                return found
        found = scorer.score(self, parsed)
        seen.append((parsed, found))
        return found

    @cached_property
    def words(self) -> list[tuple[str, ...]]:
        return list(map(word_runs, self.lower))

    @cached_property
    def token_sets(self) -> list[frozenset[str]]:
        """Each turn's distinct words and numbers: what near-duplicate checks compare."""
        return list(map(token_set, self.lower))

    def evidence(self, turn: int) -> Evidence:
        """The turn quoted, built once per view: several categories and pCSAT quote the same turns."""
        try:
            return self._evidence[turn]
        except KeyError:
            found = self._evidence[turn] = Evidence(
                turn=turn, quote=" ".join(self.texts[turn].split())[:QUOTE_CHARS]
            )
            return found

    def too_little(self) -> Finding | None:
        """N/A when there is no exchange to judge: no agent turn or no customer turn."""
        if not self.agent:
            return na("no agent turn")
        if not self.customer:
            return na("no customer turn")
        return None


class Scorer(Protocol):
    """A scorer; `parse` turns a category's raw params into whatever `score` needs (compiled once)."""

    name: str
    version: str

    def parse(self, params: Mapping[str, Any], scale: Scale) -> Any:
        """Validate and compile params; raises pydantic.ValidationError naming the bad param."""
        ...

    def can_fail(self, parsed: Any) -> bool:
        """False when these params can never produce a score below 50% (useless on a critical category)."""
        ...

    def score(self, view: ConversationView, parsed: Any) -> Finding: ...


def params_problems(exc: ValidationError) -> list[tuple[str, str]]:
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]


def clamp(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def phrase_pattern(phrases: Iterable[str], regexes: Iterable[str] = ()) -> re.Pattern[str] | None:
    """One case-insensitive alternation: phrases match on word boundaries, regexes as written."""
    parts = [r"\b" + re.escape(p.lower().strip()) + r"\b" for p in phrases if p.strip()]
    parts += [f"(?:{r})" for r in regexes]
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


class Params(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}
