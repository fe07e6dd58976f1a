import re
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from cloudevents.core.exceptions import CloudEventValidationError

from qastream_events.envelope import _encode_by_binding
from qastream_shared import asyncapi
from qastream_shared.events import (
    EVENT_TYPES,
    ConversationIngested,
    InboundConversation,
    InvalidEvent,
    decode,
    encode,
)
from qastream_shared.testing import conversation, ingested


def test_published_asyncapi_matches_the_code():
    assert asyncapi.DOCUMENT.read_bytes() == asyncapi.render(), (
        "run `qa asyncapi --write` and commit the result"
    )


def test_every_event_type_is_produced_by_a_service_or_comes_from_outside():
    flows = asyncapi.flows()
    produced = {m for f in flows.values() if f["producers"] for m in f["messages"].values()}
    external = {m for f in flows.values() if not f["producers"] for m in f["messages"].values()}
    assert produced | external == set(EVENT_TYPES.values())
    assert {m.TYPE for m in external} == {"qa.inbound.conversation.v1"}


def test_every_reference_in_the_document_resolves():
    doc = asyncapi.build()

    def resolve(ref: str) -> object:
        node: object = doc
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, ref
            node = node[part]
        return node

    def refs(node: object):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for v in node.values():
                yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    found = list(refs(doc))
    assert len(found) > 100
    for ref in found:
        resolve(ref)


def test_operations_are_each_services_receives_sends_and_dead_letters():
    ops = asyncapi.build()["operations"]
    scoring = {k for k in ops if k.startswith("scoring_")}
    assert {k for k in scoring if "_receive_" in k} == {
        "scoring_receive_qa_samples",
        "scoring_receive_qa_tenants",
    }
    assert "scoring_send_qa_dlq_scoring" in scoring and "scoring_send_qa_reviews" in scoring
    assert not {k for k in ops if k.startswith("reporting_send_") and "dlq" not in k}


def test_the_envelope_still_imports_from_events_as_in_version_1_0():
    from qastream_events import envelope, events
    from qastream_events.events import decode as old_decode

    assert old_decode is envelope.decode
    assert {n: getattr(events, n) for n in events._ENVELOPE_NAMES} == {
        n: getattr(envelope, n) for n in envelope.__all__
    }
    with pytest.raises(AttributeError, match="no attribute 'decoder'"):
        events.decoder  # noqa: B018


def test_envelope_roundtrip_keeps_attributes():
    env = ingested("acme", conversation("c-1"))
    env.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    key, value, headers = encode(env)
    back = decode(key, value, headers)
    assert (back.id, back.type, back.tenant, back.key, back.traceparent) == (
        env.id,
        env.type,
        "acme",
        "acme:c-1",
        env.traceparent,
    )
    assert back.data == env.data
    assert abs((back.time - env.time).total_seconds()) < 1e-3


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda k, v, h: (k, b"{", h), "schema violation"),
        (
            lambda k, v, h: (k, v, [(n, b"qa.x.v9" if n == "ce_type" else x) for n, x in h]),
            "unknown event type",
        ),
        (lambda k, v, h: (k, v, [(n, x) for n, x in h if n != "ce_tenant"]), "missing ce_tenant"),
        (lambda k, v, h: (k, v, [(n, x) for n, x in h if n != "ce_type"]), "missing ce_type"),
        (lambda k, v, h: (k, v, [(n, x) for n, x in h if n != "ce_source"]), "invalid CloudEvent"),
        # Records of the shape `encode` writes take a fast path: each attribute the binding would refuse
        # must still be refused, with the binding's reason.
        (lambda k, v, h: (k, v, _with(h, "ce_id", b"")), "invalid CloudEvent"),
        (lambda k, v, h: (k, v, _with(h, "ce_source", b"")), "invalid CloudEvent"),
        (lambda k, v, h: (k, v, _with(h, "ce_specversion", b"2.0")), "invalid CloudEvent"),
        (lambda k, v, h: (k, v, _with(h, "ce_time", b"2026-01-01T10:00:00")), "invalid CloudEvent"),
        (lambda k, v, h: (k, v, _with(h, "ce_time", b"yesterday")), "invalid CloudEvent"),
        (lambda k, v, h: (k, v, _with(h, "ce_subject", b"")), "invalid CloudEvent"),
        (lambda k, v, h: (k, v, _with(h, "ce_source", b"\xff")), "invalid CloudEvent"),
        (lambda k, v, h: (k, v, [*h, ("ce_Bad-Name", b"x")]), "invalid CloudEvent"),
    ],
)
def test_decode_names_what_is_wrong(mutate, reason):
    k, v, h = encode(ingested("acme", conversation("c-1")))
    with pytest.raises(InvalidEvent, match=reason):
        decode(*mutate(k, v, h))


def _with(headers, name, value):
    return [(n, value if n == name else x) for n, x in headers]


def test_records_of_other_shapes_are_read_by_the_cloudevents_binding():
    """Headers `encode` never writes (an extension, upper-case names, no ce_time) still decode."""
    env = ingested("acme", conversation("c-4"))
    k, v, h = encode(env)
    other = [(n.upper() if n == "ce_source" else n, x) for n, x in h if n != "ce_time"] + [
        ("ce_region", b"eu")
    ]
    back = decode(k, v, other)
    assert (back.id, back.source, back.tenant, back.data) == (env.id, env.source, "acme", env.data)


def test_a_traceparent_that_is_not_utf8_does_not_stop_decoding():
    k, v, h = encode(ingested("acme", conversation("c-5")))
    assert decode(k, v, [*h, ("traceparent", b"\xff\xfe")]).traceparent is not None


def test_unknown_conversation_fields_are_kept_in_metadata():
    c = conversation("c-2", crm_ticket="T-9")
    assert c.metadata["crm_ticket"] == "T-9"


def _record_with_conversation(change):
    k, v, h = encode(ingested("acme", conversation("c-7")))
    body = orjson.loads(v)
    change(body["conversation"])
    return k, orjson.dumps(body), h


def test_unknown_conversation_fields_read_from_a_record_are_kept_in_metadata():
    """Folded after validation, so also when pydantic reads the JSON itself; metadata already given wins."""

    def change(c):
        c.update(crm_ticket="T-9", queue="vip", metadata={"crm_ticket": "kept"})

    data = decode(*_record_with_conversation(change)).data
    assert isinstance(data, ConversationIngested)
    c = data.conversation
    assert c.metadata == {"crm_ticket": "kept", "queue": "vip"}
    assert "queue" not in c.model_dump() and "queue" not in c.model_fields_set
    inbound = InboundConversation.model_validate_json(
        orjson.dumps({"conversation_id": "c-8", "turns": [], "x": 1})
    )
    assert inbound.metadata == {"x": 1}


@pytest.mark.parametrize(
    "change, reason",
    [
        (
            lambda c: c["turns"][0].update(colour="red"),
            "conversation.turns.0.colour: Extra inputs are not permitted",
        ),
        (
            lambda c: c.update(conversation_id="a b"),
            "conversation.conversation_id: String should match pattern",
        ),
        (lambda c: c.update(metadata=[1]), "conversation.metadata: Input should be an object"),
    ],
)
def test_a_bad_conversation_on_the_wire_is_refused_naming_the_field(change, reason):
    with pytest.raises(InvalidEvent, match=re.escape(reason)):
        decode(*_record_with_conversation(change))


def test_decoded_envelope_keeps_the_records_payload_bytes():
    k, v, h = encode(ingested("acme", conversation("c-3")))
    env = decode(k, v, h)
    assert env.value() == v
    assert type(env.data).model_validate_json(env.value()) == env.data


@pytest.mark.parametrize(
    "subject, causationid, traceparent, time",
    [
        (None, None, None, None),
        ("c-6", "cause-1", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None),
        ("", "", "", datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))),
        ("c-6", None, None, datetime(2026, 3, 1, 12, 30, 0, 5, tzinfo=UTC)),
    ],
)
def test_encode_writes_what_the_cloudevents_binding_writes(subject, causationid, traceparent, time):
    env = ingested("acme", conversation("c-6"))
    env.subject, env.causationid, env.traceparent = subject, causationid, traceparent
    env.time = time or env.time
    assert encode(env) == _encode_by_binding(env)


@pytest.mark.parametrize(
    "change",
    [{"id": ""}, {"source": ""}, {"time": datetime(2026, 3, 1, 12, 30)}],
)
def test_encode_refuses_what_the_binding_refuses(change):
    env = ingested("acme", conversation("c-7"))
    for name, value in change.items():
        setattr(env, name, value)
    with pytest.raises(CloudEventValidationError):
        encode(env)
