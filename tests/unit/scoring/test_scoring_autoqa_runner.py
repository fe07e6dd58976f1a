"""The service's AutoQA runner: QA_LLM_* turns the llm scorer on, and its HTTP calls run concurrently off the
event loop, against a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from scoring_fixtures import chat_endpoint, convo
from test_scoring_llm import CARD

from qastream_scoring import autoqa_runner
from qastream_scoring.autoqa.llm import LlmSettings
from qastream_scoring.autoqa_runner import AutoQARunner
from qastream_scoring.default_scorecard import default_scorecard
from qastream_shared.scorecard import ScoringSettings

CALLS_AT_ONCE = 4


@pytest.fixture
def together() -> Iterator[str]:
    """An endpoint that answers only once CALLS_AT_ONCE requests are waiting together: one-at-a-time calls
    break the barrier and get a 500, which the scorer turns into N/A."""
    barrier = threading.Barrier(CALLS_AT_ONCE, timeout=5)

    def reply(path: str, auth: str | None, body: dict[str, Any]) -> tuple[int, str]:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return 500, "{}"
        return 200, json.dumps({"value": 4, "confidence": 0.9, "evidence": [1]})

    with chat_endpoint(reply) as url:
        yield url


def test_llm_is_off_without_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QA_LLM_BASE_URL", raising=False)
    runner = AutoQARunner.from_env()
    assert runner.pool is None
    review = asyncio.run(
        runner.score([convo(("customer", "hi"), ("agent", "hello"))], CARD, ScoringSettings())
    )
    assert review[0].ratings[0].value is None
    assert "off" in (review[0].ratings[0].comment or "")


def test_bad_llm_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_LLM_BASE_URL", "ftp://nowhere")
    with pytest.raises(ValueError, match="base_url"):
        LlmSettings()


def test_llm_calls_run_concurrently_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, together: str
) -> None:
    monkeypatch.setenv("QA_LLM_BASE_URL", together)
    monkeypatch.setenv("QA_LLM_RETRIES", "0")
    monkeypatch.setenv("QA_LLM_CONCURRENCY", str(CALLS_AT_ONCE))
    runner = AutoQARunner.from_env()
    convs = [convo(("customer", f"question {i}"), ("agent", f"answer {i}")) for i in range(CALLS_AT_ONCE)]

    try:
        reviews = asyncio.run(runner.score(convs, CARD, ScoringSettings()))
    finally:
        runner.close()
    # 4 on 1..5 for every conversation: each call was answered, so all were in flight at once (calls made
    # one by one on the event loop would break the barrier and come back N/A).
    assert [r.ratings[0].score for r in reviews] == [0.75] * CALLS_AT_ONCE


def test_cards_without_llm_categories_score_in_the_loop(
    monkeypatch: pytest.MonkeyPatch, together: str
) -> None:
    """With an llm endpoint configured, a card that uses no llm scorer is still scored on the event loop's
    thread: handing CPU-only work to the pool would only add GIL hand-offs."""
    monkeypatch.setenv("QA_LLM_BASE_URL", together)
    runner = AutoQARunner.from_env()
    assert runner.pool is not None
    scored_on: list[str] = []
    real = autoqa_runner.score_conversation

    def recording(*args: Any) -> Any:
        scored_on.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(autoqa_runner, "score_conversation", recording)
    try:
        conv = convo(("customer", "Hi, I need a taxi"), ("agent", "Hello! Booked, it arrives in 5 minutes."))
        [review] = asyncio.run(runner.score([conv], default_scorecard(), ScoringSettings()))
        # asyncio.run runs the loop on this thread; the pool's threads are named autoqa_N.
        assert scored_on == [threading.current_thread().name]
        assert review.result.score is not None
    finally:
        runner.close()
