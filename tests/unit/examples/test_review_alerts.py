"""The review-alerts example app's handlers, with FastStream's TestKafkaBroker (no broker)."""

from __future__ import annotations

import json

import pytest
from faststream.kafka import TestKafkaBroker

from qastream_events.envelope import Envelope, encode
from qastream_events.topics import COACHING, REVIEWS
from review_alerts.app import Alert, Config, create_app
from tests.unit.examples.review_alerts_events import coaching_task, review


async def publish(br, topic: str, env: Envelope) -> None:
    key, value, headers = encode(env)
    await br.publish(value, topic, key=key, headers={k: v.decode() for k, v in headers})


@pytest.fixture
def app(tmp_path):
    alerts: list[Alert] = []
    _, broker = create_app(Config(table=tmp_path / "table", alert=alerts.append))
    return broker, alerts, tmp_path / "table"


async def test_reviews_land_in_the_table_and_an_auto_fail_raises_an_alert(app):
    from review_alerts.table import ParquetTable

    broker, alerts, directory = app
    passed, failed = review("acme"), review("acme", auto_failed=True)
    async with TestKafkaBroker(broker) as br:
        await publish(br, REVIEWS, passed)
        await publish(br, REVIEWS, failed)
    table = ParquetTable(directory).read()
    rows = {r["event_id"]: r for r in table.to_pylist()}
    assert set(rows) == {passed.id, failed.id}
    assert rows[failed.id]["auto_failed"] is True and rows[failed.id]["tenant"] == "acme"
    assert rows[passed.id]["score"] == pytest.approx(0.9)
    assert json.loads(rows[passed.id]["payload"])["review_id"] == passed.data.review_id  # type: ignore[attr-defined]
    assert [a.review_id for a in alerts] == [failed.data.review_id]  # type: ignore[attr-defined]


async def test_coaching_events_land_in_the_table_without_alerts(app):
    from review_alerts.table import ParquetTable

    broker, alerts, directory = app
    task = coaching_task("acme")
    async with TestKafkaBroker(broker) as br:
        await publish(br, COACHING, task)
    (row,) = ParquetTable(directory).read().to_pylist()
    assert (row["event_id"], row["type"], row["agent_id"]) == (
        task.id,
        "qa.coaching.task.created.v1",
        "agent-7",
    )
    assert not alerts


async def test_a_record_that_is_no_valid_event_is_skipped_not_fatal(app):
    from review_alerts.table import ParquetTable

    broker, alerts, directory = app
    good = review("acme", auto_failed=True)
    async with TestKafkaBroker(broker) as br:
        await br.publish(b'{"review_id": 1}', REVIEWS, headers={"ce_type": "qa.review.submitted.v1"})
        await publish(br, REVIEWS, good)
    assert [r["event_id"] for r in ParquetTable(directory).read().to_pylist()] == [good.id]
    assert len(alerts) == 1


def test_a_redelivered_batch_is_read_once(tmp_path):
    from review_alerts.app import row
    from review_alerts.table import ParquetTable

    table = ParquetTable(tmp_path)
    env = review("acme")
    env.origin = (REVIEWS, 0, 5)
    table.append([row(env)])
    later = review("acme")
    later.origin = (REVIEWS, 0, 4)  # a redelivery starting one record earlier: another file, same event
    table.append([row(later), row(env)])
    assert sorted(r["event_id"] for r in table.read().to_pylist()) == sorted([env.id, later.id])


def test_committed_asyncapi_document_is_what_faststream_makes():
    from review_alerts import asyncapi

    assert asyncapi.DOCUMENT.read_text() == asyncapi.render(), (
        "run `uv run qa asyncapi --write` (it writes this document too)"
    )
    doc = json.loads(asyncapi.DOCUMENT.read_text())
    assert {c["address"] for c in doc["channels"].values()} == {REVIEWS, COACHING}
    assert {"ReviewSubmitted", "RiskAlertRaised"} <= set(doc["components"]["schemas"])
