"""One conversation's path is one OpenTelemetry trace across all five services (in-memory exporter)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from qastream_coaching.app import SPEC as COACHING
from qastream_ingest import service as ingest_service
from qastream_ingest.app import SPEC as INGEST
from qastream_reporting.app import SPEC as REPORTING
from qastream_sampler.app import SPEC as SAMPLER
from qastream_scoring.app import SPEC as SCORING
from qastream_shared import telemetry
from qastream_shared.events import Envelope, InboundConversation, conversation_key
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import conversation, eventually, produce_envelopes
from qastream_shared.topics import INBOUND_CONVERSATIONS, physical

pytestmark = pytest.mark.integration

SPECS = (INGEST, SAMPLER, SCORING, COACHING, REPORTING)


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    telemetry.export_to(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # keeps no spans for the rest of the session


@pytest.fixture
async def pipeline(settings: Settings) -> AsyncIterator[dict[str, ServiceRuntime]]:
    """All five services in this process, each in its own schema, consuming the test's own topics."""
    assert settings.db_schema
    runtimes = {
        spec.name: ServiceRuntime(
            spec, settings.model_copy(update={"db_schema": f"{settings.db_schema}_{spec.name}"})
        )
        for spec in SPECS
    }
    for rt in runtimes.values():
        await rt.start()
    try:
        yield runtimes
    finally:
        await asyncio.gather(*(rt.stop() for rt in runtimes.values()))


async def test_one_conversation_is_one_trace_through_all_five_services(
    spans: InMemorySpanExporter, pipeline: dict[str, ServiceRuntime], settings: Settings
) -> None:
    async with pipeline["ingest"].unit_of_work() as uow:
        await ingest_service.create_tenant(uow, "traced", "Traced Inc.")
    with trace.get_tracer(__name__).start_as_current_span("source system sends a conversation") as root:
        conv = conversation("c-traced")
        env = Envelope(
            data=InboundConversation.model_validate(conv.model_dump()),
            source="test",
            tenant="traced",
            key=conversation_key("traced", conv.conversation_id),
            subject=conv.conversation_id,
            traceparent=telemetry.current_traceparent(),
        )
    trace_id = root.get_span_context().trace_id
    await produce_envelopes(settings, physical(INBOUND_CONVERSATIONS, settings), [env])

    async def services_in_trace() -> set[str]:
        seen = {
            str(s.attributes.get("qa.service"))
            for s in spans.get_finished_spans()
            if s.context.trace_id == trace_id and s.attributes and "qa.service" in s.attributes
        }
        return seen if seen >= {spec.name for spec in SPECS} else set()

    assert await eventually(services_in_trace, within=120) == {spec.name for spec in SPECS}
    mine = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id and s.parent]
    # Every hop hangs off the conversation's own trace, not a trace of its own.
    assert {s.parent.trace_id for s in mine if s.parent} == {trace_id}
