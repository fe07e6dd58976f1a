"""The published AsyncAPI 3.0 document, generated from the services' ServiceSpecs, the topic registry and
the event models: each service's receive operations from `consumes`/`accepts` (and the tenant directory it
reads), its send operations from `produces`, and its dead-letter channel.

`shared/asyncapi.json` is the committed copy platform teams read; tests fail when it drifts from the code.
Regenerate with `qa asyncapi --write`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from qastream_shared.events import EVENT_TYPES, Event
from qastream_shared.runtime import ServiceSpec
from qastream_shared.services import SERVICES, app_module
from qastream_shared.topics import INBOUND_CONVERSATIONS, REGISTRY, TENANTS, Topic, dlq

DOCUMENT = Path(__file__).resolve().parents[1] / "asyncapi.json"
# Records on a topic no service produces come from the customer's systems.
EXTERNAL = "source systems"
DEAD_LETTER = "DeadLetter"

HEADERS = {
    "type": "object",
    "description": "CloudEvents 1.0 Kafka binary mode attributes, plus W3C trace context",
    "properties": {
        "ce_specversion": {"const": "1.0"},
        "ce_id": {"type": "string", "description": "Unique per event; consumers dedupe on it"},
        "ce_type": {"type": "string"},
        "ce_source": {"type": "string", "description": "The producing service"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "The conversation id, where there is one"},
        "ce_tenant": {"type": "string", "description": "Tenant id; every event carries one"},
        "ce_causationid": {"type": "string", "description": "ce_id of the event that caused this one"},
        "content-type": {"const": "application/json"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
    },
    "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_tenant"],
}


DEAD_LETTER_HEADERS = {
    "type": "object",
    "description": "The original record's headers, plus where it came from and why it was dead-lettered",
    "properties": {
        "dlq_reason": {"type": "string", "description": "Why the record can never be processed"},
        "dlq_topic": {"type": "string"},
        "dlq_partition": {"type": "string"},
        "dlq_offset": {"type": "string"},
        "dlq_service": {"type": "string"},
    },
    "required": ["dlq_reason", "dlq_topic", "dlq_partition", "dlq_offset", "dlq_service"],
}


def specs() -> dict[str, ServiceSpec]:
    return {name: app_module(name).SPEC for name in SERVICES}


def _cid(topic: str) -> str:
    return topic.replace(".", "_")


def _refs(models: Iterable[type[Event]], cid: str) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/{cid}/messages/{m.__name__}"} for m in models]


def _kafka(t: Topic) -> dict[str, Any]:
    config: dict[str, Any] = {"cleanup.policy": ["compact"] if t.compacted else ["delete"]}
    if not t.compacted and t.retention_ms is not None:
        config["retention.ms"] = t.retention_ms
    return {"kafka": {"partitions": t.partitions, "topicConfiguration": config}}


def flows() -> dict[str, dict[str, Any]]:
    """topic -> its messages, producers and consumers, from the ServiceSpecs."""
    out: dict[str, dict[str, Any]] = {
        t.name: {"messages": {}, "producers": [], "consumers": []} for t in REGISTRY
    }
    for name, spec in specs().items():
        for topic, models in spec.produces.items():
            out[topic]["producers"].append(name)
            out[topic]["messages"].update({m.__name__: m for m in models})
        for topic in spec.consumes:
            out[topic]["consumers"].append(name)
            out[topic]["messages"].update({m.__name__: m for m in spec.accepts.get(topic, ())})
        if spec.uses_directory:
            out[TENANTS]["consumers"].append(name)
        out[dlq(name)]["producers"].append(name)
    return out


def build() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for ce_type, model in sorted(EVENT_TYPES.items()):
        js = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(js.pop("$defs", {}))
        schemas[model.__name__] = js
        messages[model.__name__] = {
            "name": ce_type,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().split("\n")[0] or model.__name__,
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        }
    schemas["CloudEventHeaders"] = HEADERS
    schemas["DeadLetterHeaders"] = DEAD_LETTER_HEADERS
    messages[DEAD_LETTER] = {
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "summary": "A record its service can never process: the original key, value and headers, plus why",
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {"description": "The original record's value, unchanged (any bytes)"},
    }
    by_name = {t.name: t for t in REGISTRY}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic, flow in flows().items():
        cid = _cid(topic)
        names = [DEAD_LETTER] if topic.startswith(dlq("")) else sorted(flow["messages"])
        producers = flow["producers"] or ([EXTERNAL] if topic == INBOUND_CONVERSATIONS else [])
        channels[cid] = {
            "address": topic,
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "description": (
                f"Produced by {', '.join(producers) or 'nobody yet'}; "
                f"consumed by {', '.join(flow['consumers']) or 'platform teams'}."
            ),
            "bindings": _kafka(by_name[topic]),
        }
    for name, spec in specs().items():
        group = {"kafka": {"groupId": {"type": "string", "const": f"qa-{name}"}}}
        for topic in spec.consumes:
            operations[f"{name}_receive_{_cid(topic)}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{_cid(topic)}"},
                "summary": f"{name} consumes {topic}; other event types are dead-lettered",
                "messages": _refs(spec.accepts.get(topic, ()), _cid(topic)),
                "bindings": group,
            }
        if spec.uses_directory:
            operations[f"{name}_receive_{_cid(TENANTS)}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{_cid(TENANTS)}"},
                "summary": f"{name} reads the whole tenant directory from the start (no consumer group)",
            }
        for topic, models in spec.produces.items():
            operations[f"{name}_send_{_cid(topic)}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{_cid(topic)}"},
                "summary": f"{name} publishes through its transactional outbox",
                "messages": _refs(models, _cid(topic)),
            }
        operations[f"{name}_send_{_cid(dlq(name))}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{_cid(dlq(name))}"},
            "summary": f"{name} dead-letters records it can never process, with the reason",
            "messages": [{"$ref": f"#/channels/{_cid(dlq(name))}/messages/{DEAD_LETTER}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "qastream events",
            "version": "1.0.0",
            "description": (
                "Quality-assurance events for customer-service conversations. Keys are "
                "`tenant_id:conversation_id` on conversation-scoped topics, so one conversation's events stay "
                "in order on one partition. Additive changes keep the type; breaking ones get a new `.vN` type. "
                "The models are published as the `qastream-events` Python package."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def render() -> bytes:
    return orjson.dumps(build(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
