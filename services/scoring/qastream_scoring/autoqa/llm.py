"""`llm`: an optional OpenAI-compatible chat endpoint rates one category from a per-category prompt.

Off by default: without an `LlmConfig` every llm category is N/A ("llm scorer is off"). With one, the
scorer asks `{base_url}/chat/completions` through the `openai` SDK and expects the reply's message content
to be JSON: `{"value": <int on the scale> | null, "confidence": 0..1, "evidence": [turn indexes], "reason": "..."}`.
The SDK retries transport errors, timeouts, 408/409/429 and 5xx `retries` times with jittered exponential
backoff, honouring the server's Retry-After; each attempt is bounded by `timeout_s`. An answer that is not
such JSON, or a value off the scale, raises `LlmError`; the pipeline turns any error into N/A with the error
in the provenance, so a dead endpoint never costs a review.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from qastream_scoring.autoqa.base import ConversationView, Finding, Params, na
from qastream_shared.scorecard import Scale

if TYPE_CHECKING:
    import openai


class LlmError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class LlmConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str | None = None
    timeout_s: float = 10.0
    retries: int = 2
    max_transcript_chars: int = 12_000


class LlmSettings(BaseSettings):
    """The scoring service's endpoint, from QA_LLM_* variables; no QA_LLM_BASE_URL means the scorer is off."""

    model_config = SettingsConfigDict(env_prefix="QA_LLM_", extra="ignore")

    base_url: str | None = Field(default=None, pattern=r"^https?://")
    model: str = "gpt-4o-mini"
    api_key: SecretStr | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    retries: int = Field(default=2, ge=0, le=10)
    # Conversations scored at once while their llm categories wait on the endpoint.
    concurrency: int = Field(default=8, ge=1, le=256)

    def config(self) -> LlmConfig | None:
        if not self.base_url:
            return None
        key = self.api_key.get_secret_value() if self.api_key else None
        return LlmConfig(self.base_url, self.model, key, self.timeout_s, self.retries)


class LlmParams(Params):
    prompt: str = Field(min_length=1, max_length=4000)


@dataclass(frozen=True, slots=True)
class _Parsed:
    prompt: str
    lo: int
    hi: int


class _Answer(BaseModel):
    value: int | None
    confidence: float = Field(default=0.5, ge=0, le=1)
    evidence: list[int] = Field(default_factory=list)
    reason: str | None = None


SYSTEM = (
    "You are a quality-assurance reviewer of customer-service conversations. Rate the conversation on the "
    "question below using an integer from {lo} to {hi} ({lo} = worst, {hi} = best), or null when the "
    "conversation gives nothing to judge it by. Answer with JSON only: "
    '{{"value": int|null, "confidence": number 0..1, "evidence": [turn numbers], "reason": "short"}}.'
    "\nQuestion: {prompt}"
)


class LlmScorer:
    name = "llm"
    version = "1.0.0"

    def __init__(self, config: LlmConfig | None = None) -> None:
        self.config = config
        if config is not None:
            # Imported here: the SDK is seconds of every scoring start, and the scorer is off by default.
            import openai
        self._client = (
            openai.OpenAI(
                base_url=config.base_url,
                # The SDK insists on a key; endpoints without auth (a local vLLM or Ollama) ignore this one.
                api_key=config.api_key or "no-key",
                timeout=config.timeout_s,
                max_retries=config.retries,
            )
            if config
            else None
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def parse(self, params: Mapping[str, Any], scale: Scale) -> _Parsed:
        p = LlmParams.model_validate(params)
        lo, hi = scale.bounds() or (0, 0)
        return _Parsed(p.prompt, lo, hi)

    def can_fail(self, parsed: _Parsed) -> bool:
        return True

    def score(self, view: ConversationView, parsed: _Parsed) -> Finding:
        if self.config is None or self._client is None:
            return na("llm scorer is off")
        if (short := view.too_little()) is not None:
            return short
        content = self._ask(self.config, self._client, view, parsed)
        try:
            answer = _Answer.model_validate_json(_strip_fence(content))
        except ValidationError as exc:
            raise LlmError(
                f"answer is not the expected JSON: {exc.errors()[0]['msg']}: {content[:200]!r}"
            ) from None
        if answer.value is None:
            return na(answer.reason or "the model found nothing to judge")
        if not parsed.lo <= answer.value <= parsed.hi:
            raise LlmError(f"value {answer.value} is outside the scale {parsed.lo}..{parsed.hi}")
        turns = [i for i in answer.evidence if 0 <= i < len(view.texts)][:5]
        return Finding(
            (answer.value - parsed.lo) / (parsed.hi - parsed.lo),
            answer.confidence,
            tuple(view.evidence(i) for i in turns),
            answer.reason,
        )

    def _ask(self, config: LlmConfig, client: openai.OpenAI, view: ConversationView, parsed: _Parsed) -> str:
        transcript = "\n".join(
            f"[{i}] {role.value}: {text}"
            for i, (role, text) in enumerate(zip(view.roles, view.texts, strict=True))
        )[: config.max_transcript_chars]
        import openai  # loaded by __init__ already

        attempts = config.retries + 1
        try:
            completion = client.chat.completions.create(
                model=config.model,
                temperature=0,
                messages=[
                    {
                        "role": "system",
                        "content": SYSTEM.format(lo=parsed.lo, hi=parsed.hi, prompt=parsed.prompt),
                    },
                    {"role": "user", "content": transcript},
                ],
            )
        except openai.APIStatusError as exc:
            if exc.status_code in (408, 409, 429) or exc.status_code >= 500:  # the ones the SDK retried
                raise LlmError(
                    f"endpoint unavailable after {attempts} attempts: HTTP {exc.status_code}"
                ) from None
            raise LlmError(f"HTTP {exc.status_code}: {exc.message[:200]}") from None
        except openai.APIConnectionError as exc:  # includes timeouts
            raise LlmError(
                f"endpoint unavailable after {attempts} attempts: {type(exc).__name__}: {exc}"
            ) from None
        try:
            return str(completion.choices[0].message.content)
        except (AttributeError, IndexError, TypeError) as exc:
            raise LlmError(f"not a chat completion: {type(exc).__name__}: {completion!r:.200}") from None


def _strip_fence(content: str) -> str:
    """Models often wrap JSON in a ``` fence despite being asked not to."""
    s = content.strip()
    if s.startswith("```"):
        s = s.split("\n", 1)[1] if "\n" in s else ""
        s = s.rsplit("```", 1)[0]
    return s.strip() or json.dumps(None)
