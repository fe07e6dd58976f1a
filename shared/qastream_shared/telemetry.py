"""Logs, traces and metrics: JSON logs carrying tenant and trace ids, W3C trace context across Kafka."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pythonjsonlogger.json import JsonFormatter

from qastream_shared.settings import Settings

tenant_var: ContextVar[str | None] = ContextVar("tenant", default=None)
_propagator = TraceContextTextMapPropagator()


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.tenant = tenant_var.get()
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else None
        record.span_id = format(ctx.span_id, "016x") if ctx.is_valid else None
        return True


def configure(settings: Settings, service: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"service": service},
            )
        )
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)

    provider = _provider(service)
    if settings.otel_exporter in _exporters:
        return  # one exporter of a kind per process, however many services it runs
    if settings.otel_exporter == "console":
        export_to(BatchSpanProcessor(ConsoleSpanExporter()))
    elif settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_endpoint.rstrip("/") + "/v1/traces"
        export_to(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)), provider)
    _exporters.add(settings.otel_exporter)


_exporters: set[str] = set()


def _provider(service: str = "") -> TracerProvider:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        name = f"qastream-{service}" if service else "qastream"
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        trace.set_tracer_provider(provider)
    return provider


def export_to(processor: SpanProcessor, provider: TracerProvider | None = None) -> None:
    """Sends this process's spans to `processor` too (an exporter; tests use an in-memory one)."""
    (provider or _provider()).add_span_processor(processor)
    _exporters.add(f"processor-{id(processor)}")


def exporting() -> bool:
    """Spans leave the process: only then is a span per consumed event worth its cost."""
    return bool(_exporters - {"none"})


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> Any:
    return _propagator.extract({"traceparent": traceparent} if traceparent else {})
