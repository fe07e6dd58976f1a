"""The published AsyncAPI 3.0 document, generated from the topic registry and the event models.

`shared/asyncapi.json` is the committed copy platform teams read; tests fail when it drifts from the code.
Regenerate with `qa asyncapi --write`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from qastream_shared.events import EVENT_TYPES
from qastream_shared.topics import (
    ASSIGNMENTS,
    CALIBRATIONS,
    COACHING,
    CONVERSATIONS,
    DISPUTES,
    INBOUND_CONVERSATIONS,
    REGISTRY,
    REVIEWS,
    SAMPLES,
    SCORECARDS,
    TENANTS,
)

DOCUMENT = Path(__file__).resolve().parents[1] / "asyncapi.json"

# Which event types travel on which topic, and who produces / consumes them.
CHANNELS: dict[str, dict[str, Any]] = {
    INBOUND_CONVERSATIONS: {
        "types": ["qa.inbound.conversation.v1"],
        "producers": ["source systems"],
        "consumers": ["ingest"],
    },
    TENANTS: {
        "types": ["qa.tenant.upserted.v1", "qa.apikey.issued.v1", "qa.apikey.revoked.v1"],
        "producers": ["ingest"],
        "consumers": ["sampler", "scoring", "coaching", "reporting"],
    },
    CONVERSATIONS: {
        "types": ["qa.conversation.ingested.v1", "qa.conversation.updated.v1", "qa.csat.recorded.v1"],
        "producers": ["ingest"],
        "consumers": ["sampler", "reporting"],
    },
    SAMPLES: {
        "types": ["qa.conversation.sampled.v1"],
        "producers": ["sampler"],
        "consumers": ["scoring", "reporting"],
    },
    SCORECARDS: {
        "types": ["qa.scorecard.published.v1"],
        "producers": ["scoring"],
        "consumers": ["scoring", "coaching"],
    },
    REVIEWS: {
        "types": ["qa.review.submitted.v1", "qa.review.revised.v1"],
        "producers": ["scoring"],
        "consumers": ["sampler", "coaching", "reporting"],
    },
    ASSIGNMENTS: {
        "types": ["qa.assignment.changed.v1"],
        "producers": ["scoring"],
        "consumers": ["reporting"],
    },
    DISPUTES: {
        "types": ["qa.dispute.opened.v1", "qa.dispute.resolved.v1"],
        "producers": ["scoring"],
        "consumers": ["coaching", "reporting"],
    },
    CALIBRATIONS: {
        "types": ["qa.calibration.opened.v1", "qa.calibration.closed.v1"],
        "producers": ["scoring"],
        "consumers": ["coaching", "reporting"],
    },
    COACHING: {
        "types": [
            "qa.coaching.task.created.v1",
            "qa.coaching.task.evidence_added.v1",
            "qa.coaching.task.evidence_withdrawn.v1",
            "qa.coaching.task.confirmed.v1",
            "qa.coaching.task.acknowledged.v1",
            "qa.coaching.task.completed.v1",
            "qa.coaching.task.dismissed.v1",
            "qa.coaching.impact.measured.v1",
            "qa.coaching.alert.raised.v1",
        ],
        "producers": ["coaching"],
        "consumers": ["reporting"],
    },
}

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
    by_name = {t.name: t for t in REGISTRY}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic, info in CHANNELS.items():
        t = by_name[topic]
        names = [EVENT_TYPES[x].__name__ for x in info["types"]]
        cid = topic.replace(".", "_")
        channels[cid] = {
            "address": topic,
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "description": f"Produced by {', '.join(info['producers'])}; consumed by {', '.join(info['consumers'])}.",
            "bindings": {
                "kafka": {
                    "partitions": t.partitions,
                    "topicConfiguration": {
                        "cleanup.policy": ["compact"] if t.compacted else ["delete"],
                        **(
                            {"retention.ms": t.retention_ms}
                            if not t.compacted and t.retention_ms is not None
                            else {}
                        ),
                    },
                }
            },
        }
        operations[f"consume_{cid}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": f"Read {topic}",
            "bindings": {"kafka": {"clientId": {"type": "string"}}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "qastream events",
            "version": "1.0.0",
            "description": (
                "Quality-assurance events for customer-service conversations. Keys are "
                "`tenant_id:conversation_id` on conversation-scoped topics, so one conversation's events stay "
                "in order on one partition. Additive changes keep the type; breaking ones get a new `.vN` type."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def render() -> bytes:
    return orjson.dumps(build(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
