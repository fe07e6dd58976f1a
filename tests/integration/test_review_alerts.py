"""The platform-team example (examples/review-alerts) against the real broker while scoring runs: every
review on qa.reviews lands in its Parquet table once, and each auto-fail raises one alert."""

from __future__ import annotations

import uuid

import pytest

from qastream_shared.events import decode
from qastream_shared.stack import free_port
from qastream_shared.testing import add_tenant, eventually, produce_envelopes, read_topic
from qastream_shared.topics import COACHING, REVIEWS, SAMPLES, ensure_topics, physical
from review_alerts.app import Alert, Config, create_app
from review_alerts.table import ParquetTable
from tests.integration.test_scoring import sampled, star
from tests.unit.examples.review_alerts_events import coaching_task, review

pytestmark = pytest.mark.integration


async def test_app_tables_every_review_of_the_running_pipeline_and_alerts_on_auto_fail(
    settings, spawn, tmp_path
):
    n = 40
    await ensure_topics(settings)
    await add_tenant(settings, "acme")
    spawn(["-m", "qastream_shared.cli", "serve", "scoring"], {"QA_HTTP_PORT": str(free_port())})
    await produce_envelopes(settings, physical(SAMPLES, settings), [sampled("acme", c) for c in star(n)])
    failed = [review("acme", auto_failed=True) for _ in range(2)]
    await produce_envelopes(settings, physical(REVIEWS, settings), [review("acme"), *failed])
    await produce_envelopes(settings, physical(COACHING, settings), [coaching_task("acme")])

    alerts: list[Alert] = []
    config = Config(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        table=tmp_path / "table",
        group_id=f"review-alerts-{uuid.uuid4().hex[:8]}",
        topic_prefix=settings.topic_prefix,
        alert=alerts.append,
    )
    _, broker = create_app(config)
    table = ParquetTable(config.table)
    expected = n + 3 + 1  # scoring's reviews, ours, one coaching task
    await broker.start()
    try:
        await eventually(lambda: _rows_at_least(table, expected), within=180)
    finally:
        await broker.stop()

    on_topic = {
        decode(r.key, r.value, r.headers).id
        for r in await read_topic(settings, physical(REVIEWS, settings), expect=n + 3)
    }
    rows = table.read().to_pylist()
    assert {r["event_id"] for r in rows if r["topic"].endswith(REVIEWS)} == on_topic
    assert len(rows) == expected
    auto_failed = {r["review_id"] for r in rows if r["auto_failed"]}
    assert sorted(a.review_id for a in alerts) == sorted(auto_failed)
    assert {f.data.review_id for f in failed} <= auto_failed  # type: ignore[attr-defined]


async def _rows_at_least(table: ParquetTable, n: int) -> bool:
    return table.read().num_rows >= n
