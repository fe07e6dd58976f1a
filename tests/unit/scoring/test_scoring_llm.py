"""The llm scorer against a real local HTTP server speaking the OpenAI chat-completions shape."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from scoring_fixtures import card, chat_endpoint, convo

from qastream_scoring.autoqa import LlmConfig, default_registry, score_conversation
from qastream_shared.scorecard import Category, Scale, ScaleKind, ScorerRef

CONV = convo(
    ("customer", "Can you reset my password?"), ("agent", "Done, I've sent a reset link to your email.")
)
CARD = card(
    Category(
        category_id="accuracy",
        name="Accuracy",
        weight=10,
        scale=Scale(kind=ScaleKind.five_point),
        scorer=ScorerRef(name="llm", params={"prompt": "Was the information correct?"}),
    )
)


class Endpoint:
    """Replies are queued per test: each is (status, message content[, response headers]); `HANG` makes the
    server hold the request until the test ends."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, str] | tuple[int, str, dict[str, str]]] = []
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()


HANG = (0, "hang")


@pytest.fixture
def endpoint() -> Iterator[tuple[Endpoint, str]]:
    state = Endpoint()

    def reply(
        path: str, auth: str | None, body: dict[str, Any]
    ) -> tuple[int, str] | tuple[int, str, dict[str, str]]:
        state.requests.append({"path": path, "auth": auth, "body": body, "at": time.monotonic()})
        answer = state.replies.pop(0)
        if answer == HANG:
            state.release.wait(30)
            return 200, '{"value": 5}'
        return answer

    with chat_endpoint(reply) as url:
        yield state, url
        state.release.set()


def review(base_url: str, retries: int = 1, timeout_s: float = 2) -> Any:
    registry = default_registry(
        LlmConfig(base_url=base_url, model="m", api_key="k", timeout_s=timeout_s, retries=retries)
    )
    return score_conversation(CONV, CARD, registry=registry).ratings[0]


def test_llm_is_off_by_default() -> None:
    rating = score_conversation(CONV, CARD).ratings[0]
    assert rating.value is None and rating.comment == "llm scorer is off"


def test_llm_rates_on_the_scale_with_evidence(endpoint: tuple[Endpoint, str]) -> None:
    state, url = endpoint
    state.replies.append(
        (200, '```json\n{"value": 4, "confidence": 0.9, "evidence": [1, 99], "reason": "ok"}\n```')
    )
    rating = review(url)
    assert (rating.value, rating.score) == (4, 0.75)
    assert rating.provenance.scorer == "llm" and rating.provenance.confidence == 0.9
    assert [e.turn for e in rating.provenance.evidence] == [1]  # out-of-range turn 99 dropped
    req = state.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer k"
    assert "1 to 5" in req["body"]["messages"][0]["content"]
    assert "[1] agent: Done" in req["body"]["messages"][1]["content"]


def test_llm_retries_a_5xx(endpoint: tuple[Endpoint, str]) -> None:
    state, url = endpoint
    state.replies += [(503, "busy"), (200, '{"value": 5}')]
    assert review(url).value == 5
    assert len(state.requests) == 2


def test_llm_waits_as_long_as_retry_after_says(endpoint: tuple[Endpoint, str]) -> None:
    state, url = endpoint
    state.replies += [(429, "slow down", {"retry-after-ms": "700"}), (200, '{"value": 3}')]
    assert review(url).value == 3
    assert state.requests[1]["at"] - state.requests[0]["at"] >= 0.7  # not before the server allowed it


def test_llm_gives_up_on_a_4xx_at_once(endpoint: tuple[Endpoint, str]) -> None:
    state, url = endpoint
    state.replies += [(400, "bad request"), (200, '{"value": 3}')]
    rating = review(url, retries=3)
    assert rating.value is None and "HTTP 400" in (rating.provenance.error or "")
    assert len(state.requests) == 1


def test_llm_attempt_that_hangs_times_out_and_is_na(endpoint: tuple[Endpoint, str]) -> None:
    state, url = endpoint
    state.replies.append(HANG)
    rating = review(url, retries=0, timeout_s=0.3)
    assert rating.value is None
    assert "endpoint unavailable after 1 attempts: APITimeoutError" in (rating.provenance.error or "")


@pytest.mark.parametrize(
    ("content", "error"),
    [('{"value": 9}', "outside the scale 1..5"), ("I think it was fine", "not the expected JSON")],
)
def test_llm_bad_answers_are_na_with_the_error(
    endpoint: tuple[Endpoint, str], content: str, error: str
) -> None:
    state, url = endpoint
    state.replies.append((200, content))
    rating = review(url)
    assert rating.value is None and error in (rating.provenance.error or "")


def test_llm_endpoint_down_is_na_and_never_raises() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rating = review(f"http://127.0.0.1:{port}/v1", retries=1)
    assert rating.value is None
    assert "endpoint unavailable after 2 attempts" in (rating.provenance.error or "")
