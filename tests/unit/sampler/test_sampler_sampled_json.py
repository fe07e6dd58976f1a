"""ConversationSampled's JSON built around the conversation's ingested bytes (`sampled_json`) reads back as
the event the model would have dumped, on real conversations and on text made to look like structure."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from qastream_sampler.decisions import Decision, sampled_json, to_event
from qastream_shared.events import ConversationIngested, ConversationSampled, Envelope, Purpose
from qastream_shared.testing import conversation, star_records

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def ingested_json(conv: object) -> tuple[ConversationIngested, bytes]:
    """As ingest publishes it (the envelope's value), and the event a consumer decodes from it."""
    body = Envelope(
        data=ConversationIngested.model_validate({"conversation": conv, "ingested_at": AT}),
        source="ingest",
        tenant="t",
        key="k",
    ).value()
    return ConversationIngested.model_validate_json(body), body


def decision(cid: str) -> Decision:
    return Decision(cid, Purpose.manual, "weekly", 3, 20, "agent=a1", None, 0.25, "quota: 3 of 12", AT)


@pytest.mark.parametrize("record", list(star_records(40)), ids=lambda r: r["conversation_id"])
def test_a_real_conversation_reads_back_as_the_models_own_json(record: dict[str, object]) -> None:
    event, body = ingested_json(record)
    sampled = to_event(decision(event.conversation.conversation_id), event.conversation)
    spliced = sampled_json(sampled, body)
    assert spliced is not None and spliced != sampled.model_dump_json().encode()  # not the model's dump
    assert orjson.loads(spliced) == orjson.loads(sampled.model_dump_json())
    assert ConversationSampled.model_validate_json(spliced) == sampled


def test_text_and_extra_fields_that_look_like_the_next_field_do_not_cut_the_conversation_short() -> None:
    conv = conversation("c-1").model_dump(mode="json")
    conv["turns"][0]["text"] = 'see ,"ingested_at": and {"conversation": here'
    conv["ingested_at"] = "an extra field of the conversation, kept by extra=allow"
    event, body = ingested_json(conv)
    sampled = to_event(decision("c-1"), event.conversation)
    spliced = sampled_json(sampled, body)
    assert spliced is not None
    assert orjson.loads(spliced) == orjson.loads(sampled.model_dump_json())


def test_another_layout_is_left_to_the_model() -> None:
    event, body = ingested_json(conversation("c-2"))
    reordered = orjson.dumps({"ingested_at": AT, "conversation": orjson.loads(body)["conversation"]})
    assert sampled_json(to_event(decision("c-2"), event.conversation), reordered) is None
