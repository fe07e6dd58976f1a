"""AutoQA: versioned scorers rate every category of a scorecard, with provenance."""

from qastream_scoring.autoqa.base import ConversationView, Finding, Scorer
from qastream_scoring.autoqa.llm import LlmConfig, LlmError, LlmScorer
from qastream_scoring.autoqa.pipeline import AutoReview, PreparedScorecard, prepare, score_conversation
from qastream_scoring.autoqa.registry import DEFAULT_REGISTRY, Registry, default_registry

__all__ = [
    "DEFAULT_REGISTRY",
    "AutoReview",
    "ConversationView",
    "Finding",
    "LlmConfig",
    "LlmError",
    "LlmScorer",
    "PreparedScorecard",
    "Registry",
    "Scorer",
    "default_registry",
    "prepare",
    "score_conversation",
]
