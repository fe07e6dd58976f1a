"""The llm scorer against a real local HTTP server speaking the OpenAI chat-completions shape."""

from __future__ import annotations

import socket
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
    """Replies are queued per test: each is (status, message content)."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, str]] = []
        self.requests: list[dict[str, Any]] = []


@pytest.fixture
def endpoint() -> Iterator[tuple[Endpoint, str]]:
    state = Endpoint()

    def reply(path: str, auth: str | None, body: dict[str, Any]) -> tuple[int, str]:
        state.requests.append({"path": path, "auth": auth, "body": body})
        return state.replies.pop(0)

    with chat_endpoint(reply) as url:
        yield state, url


def review(base_url: str, retries: int = 1) -> Any:
    registry = default_registry(
        LlmConfig(base_url=base_url, model="m", api_key="k", timeout_s=2, retries=retries, backoff_s=0)
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
