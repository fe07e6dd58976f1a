"""The scorer registry: name → scorer. Scorecard validation checks category scorers against it."""

from __future__ import annotations

from collections.abc import Iterable

from qastream_scoring.autoqa.base import Scorer
from qastream_scoring.autoqa.conduct import ConductScorer
from qastream_scoring.autoqa.llm import LlmConfig, LlmScorer
from qastream_scoring.autoqa.phrases import PhrasesScorer
from qastream_scoring.autoqa.resolution import ResolutionScorer
from qastream_scoring.autoqa.sentiment import SentimentScorer
from qastream_scoring.autoqa.spelling import SpellingScorer
from qastream_scoring.autoqa.timing import TimingScorer


class Registry:
    def __init__(self, scorers: Iterable[Scorer]) -> None:
        self._scorers = {s.name: s for s in scorers}

    def get(self, name: str) -> Scorer | None:
        return self._scorers.get(name)

    def names(self) -> list[str]:
        return sorted(self._scorers)

    def versions(self) -> dict[str, str]:
        return {name: s.version for name, s in sorted(self._scorers.items())}


def default_registry(llm: LlmConfig | None = None) -> Registry:
    """Every built-in scorer; `llm` stays off (N/A) unless an endpoint is configured."""
    return Registry(
        [
            PhrasesScorer(),
            SentimentScorer(),
            TimingScorer(),
            ResolutionScorer(),
            SpellingScorer(),
            ConductScorer(),
            LlmScorer(llm),
        ]
    )


DEFAULT_REGISTRY = default_registry()
