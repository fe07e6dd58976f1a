"""`spelling`: the agent's spelling error rate, against pyspellchecker's English word list.

Words are lowercase alphabetic tokens of 3+ letters; capitalised tokens are skipped (names, places,
brands). The score falls linearly from 1 at no errors to 0 at `max_error_rate`. N/A under `min_words`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import Field
from spellchecker import SpellChecker

from qastream_scoring.autoqa.base import ConversationView, Finding, Params, clamp, na
from qastream_shared.scorecard import Scale

_TOKEN = re.compile(r"(?<![\w'@/.-])[a-z]{3,}(?![\w'@/-])")


class SpellingParams(Params):
    max_error_rate: float = Field(default=0.1, gt=0, le=1)
    min_words: int = Field(default=5, ge=1)


@lru_cache(maxsize=1)
def _checker() -> SpellChecker:
    return SpellChecker(language="en")


@lru_cache(maxsize=65536)
def misspelled(text: str) -> tuple[int, tuple[str, ...]]:
    """(words checked, misspelled words) of one text; cached because agent macros repeat."""
    words = _TOKEN.findall(text)
    checker = _checker()
    return len(words), tuple(w for w in words if w not in checker)


class SpellingScorer:
    name = "spelling"
    version = "1.0.0"

    def parse(self, params: Mapping[str, Any], scale: Scale) -> SpellingParams:
        return SpellingParams.model_validate(params)

    def can_fail(self, parsed: SpellingParams) -> bool:
        return True

    def score(self, view: ConversationView, parsed: SpellingParams) -> Finding:
        if (short := view.too_little()) is not None:
            return short
        total = 0
        wrong: list[tuple[int, int]] = []  # (misspellings, turn)
        for i in view.agent:
            n, bad = misspelled(view.texts[i])
            total += n
            if bad:
                wrong.append((len(bad), i))
        if total < parsed.min_words:
            return na(f"fewer than {parsed.min_words} agent words")
        rate = sum(n for n, _ in wrong) / total
        worst = sorted(wrong, reverse=True)[:3]
        return Finding(
            clamp(1 - rate / parsed.max_error_rate),
            0.7,
            tuple(view.evidence(i) for _, i in worst),
            f"{rate:.1%} of {total} agent words misspelled",
        )
