"""The review row's pCSAT JSON, written by orjson from the prediction's plain values, is byte for byte the
prediction's model_dump_json (what the event carries), on every STAR conversation and without a prediction."""

from __future__ import annotations

import pytest
from scoring_fixtures import convo

from qastream_ingest.importers import parse_star
from qastream_scoring.autoqa import DEFAULT_REGISTRY, prepare
from qastream_scoring.autoqa_runner import AutoQARunner
from qastream_scoring.default_scorecard import default_scorecard
from qastream_scoring.pcsat import current
from qastream_shared.conversation import Conversation
from qastream_shared.scorecard import ScoringSettings
from qastream_shared.testing import STAR


def test_the_json_is_the_predictions_own_without_a_prediction() -> None:
    model = current()
    for conversation in (convo(("agent", "Hello?")), convo(("customer", "Hello? I need help"))):
        prediction, text = model.predict_with_json(conversation)
        assert prediction.reason is not None
        assert text == prediction.model_dump_json()


def test_the_runner_carries_the_predictions_own_json_on_every_star_conversation() -> None:
    if not STAR.exists():
        pytest.skip(f"{STAR} is not here")
    with STAR.open("rb") as fh:
        convs = [c for c in parse_star(fh) if isinstance(c, Conversation)]
    runner = AutoQARunner(DEFAULT_REGISTRY, pcsat=current())
    card, settings = prepare(default_scorecard()), ScoringSettings()
    differ = []
    for c in convs:
        auto = runner.review(c, card, settings)
        assert auto.pcsat is not None
        if auto.pcsat_json != auto.pcsat.model_dump_json():
            differ.append(c.conversation_id)
    assert not differ, differ[:5]
