"""pCSAT's JSON is never built as a model on the service's path: orjson writes it from the prediction's plain
values, and the service splices it into the ReviewSubmitted it publishes. Both must be byte for byte what
pydantic writes for the models (what every consumer validates), on every STAR conversation and without a
prediction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from scoring_fixtures import convo

from qastream_ingest.importers import parse_star
from qastream_scoring.autoqa import DEFAULT_REGISTRY, prepare
from qastream_scoring.autoqa_runner import AutoQARunner
from qastream_scoring.default_scorecard import default_scorecard
from qastream_scoring.pcsat import current
from qastream_scoring.service import auto_review_event, review_id, with_pcsat
from qastream_shared.conversation import Conversation
from qastream_shared.events import EVENT_TYPES, PredictedCsat
from qastream_shared.scorecard import ScoringSettings
from qastream_shared.testing import STAR


def test_the_json_is_the_predictions_own_without_a_prediction() -> None:
    model = current()
    for conversation in (convo(("agent", "Hello?")), convo(("customer", "Hello? I need help"))):
        text = model.predict_json(conversation)
        prediction = PredictedCsat.model_validate_json(text)
        assert prediction.reason is not None
        assert prediction == model.predict(conversation)
        assert text == prediction.model_dump_json().encode()


def test_the_published_review_is_the_models_own_json_on_every_star_conversation() -> None:
    if not STAR.exists():
        pytest.skip(f"{STAR} is not here")
    with STAR.open("rb") as fh:
        convs = [c for c in parse_star(fh) if isinstance(c, Conversation)]
    runner = AutoQARunner(DEFAULT_REGISTRY, pcsat=current())
    card, settings = prepare(default_scorecard()), ScoringSettings()
    now = datetime.now(UTC)
    differ = []
    for i, c in enumerate(convs):
        auto = runner.review(c, card, settings)
        assert auto.pcsat_json is not None and auto.pcsat_version == current().version
        prediction = PredictedCsat.model_validate_json(auto.pcsat_json)
        # Every other inclusion probability present, so the field before pcsat is written both ways.
        inclusion = 0.25 if i % 2 else None
        event = auto_review_event(review_id("t", c.conversation_id, auto), c, auto, inclusion, now)
        spliced = with_pcsat(event.model_dump_json().encode(), auto.pcsat_json)
        whole = event.model_copy(update={"pcsat": prediction})
        if (
            spliced != whole.model_dump_json().encode()
            or auto.pcsat_json != prediction.model_dump_json().encode()
        ):
            differ.append(c.conversation_id)
        elif i % 97 == 0:  # as a consumer reads it
            assert EVENT_TYPES[whole.TYPE].model_validate_json(spliced) == whole
    assert not differ, differ[:5]
