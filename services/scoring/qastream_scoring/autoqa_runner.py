"""How the service runs AutoQA: the scorer registry with the configured llm endpoint, and the threads that keep
the endpoint's blocking HTTP calls off the event loop (and scoring one conversation's call from waiting on
another's)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from pydantic_settings import BaseSettings, SettingsConfigDict

from qastream_scoring.autoqa import (
    DEFAULT_REGISTRY,
    AutoReview,
    LlmScorer,
    Registry,
    default_registry,
    prepare,
    score_conversation,
)
from qastream_scoring.autoqa.base import ConversationView
from qastream_scoring.autoqa.llm import LlmSettings
from qastream_scoring.autoqa.pipeline import PreparedScorecard
from qastream_scoring.pcsat import PcsatModel
from qastream_scoring.pcsat import current as pcsat_model
from qastream_shared.conversation import Conversation
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.scorecard import Scorecard, ScoringSettings

# Conversations scored between turns of the event loop (~1 ms each on the default scorecard).
YIELD_EVERY = 8


class PcsatSettings(BaseSettings):
    """QA_PCSAT_ENABLED=false publishes auto reviews without pCSAT (bench.scoring measures its cost so)."""

    model_config = SettingsConfigDict(env_prefix="QA_PCSAT_", extra="ignore")
    enabled: bool = True


@dataclass
class AutoQARunner:
    registry: Registry
    pool: ThreadPoolExecutor | None = None  # only when an llm endpoint is configured
    pcsat: PcsatModel | None = field(default_factory=pcsat_model)

    @classmethod
    def from_env(cls) -> AutoQARunner:
        llm = LlmSettings()
        config = llm.config()
        pcsat = pcsat_model() if PcsatSettings().enabled else None
        if config is None:
            return cls(DEFAULT_REGISTRY, pcsat=pcsat)
        pool = ThreadPoolExecutor(llm.concurrency, thread_name_prefix="autoqa")
        return cls(default_registry(config), pool, pcsat)

    async def score(
        self, conversations: Sequence[Conversation], card: Scorecard, settings: ScoringSettings
    ) -> list[AutoReview]:
        prepared = prepare(card, self.registry)
        uses_llm = any(
            pc.scorer is not None and pc.scorer.name == LlmScorer.name for pc in prepared.categories
        )
        if self.pool is None or not uses_llm:
            # CPU-only scorers: threads would only add GIL hand-offs. The loop gets a turn every few
            # conversations, so the relay publishes the previous batch's reviews, and the next batch is
            # fetched, while this one is scored, instead of both waiting out the whole batch.
            out = []
            for n, c in enumerate(conversations, 1):
                out.append(self.review(c, prepared, settings))
                if n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            return out
        loop = asyncio.get_running_loop()
        return list(
            await asyncio.gather(
                *(loop.run_in_executor(self.pool, self.review, c, prepared, settings) for c in conversations)
            )
        )

    def review(
        self, conversation: Conversation, prepared: PreparedScorecard, settings: ScoringSettings
    ) -> AutoReview:
        # One view for the scorecard and pCSAT: pCSAT reuses the findings and cues the categories computed.
        view = ConversationView(conversation)
        auto = score_conversation(view, prepared, settings, self.registry)
        if self.pcsat is None:
            return auto
        return replace(auto, pcsat_version=self.pcsat.version, pcsat_json=self.pcsat.predict_json(view))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        llm = self.registry.get(LlmScorer.name)
        if isinstance(llm, LlmScorer):
            llm.close()


def runner_of(runtime: ServiceRuntime) -> AutoQARunner:
    runner = runtime.components.get("autoqa")
    if runner is None:
        runner = runtime.components["autoqa"] = AutoQARunner.from_env()
    assert isinstance(runner, AutoQARunner)
    return runner


async def close_on_stop(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    """Closes the endpoint's connections and threads once the consumer has finished its last batch."""
    await stop.wait()
    if runtime.consumer is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.consumer.stopped.wait(), 10)
    await asyncio.to_thread(runner_of(runtime).close)
