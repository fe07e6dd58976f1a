from opentelemetry import trace

from qastream_shared.telemetry import context_from_traceparent

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_traceparent_header_round_trips_into_a_span_context():
    ctx = trace.get_current_span(context_from_traceparent(TP)).get_span_context()
    assert ctx.is_valid
    assert format(ctx.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(ctx.span_id, "016x") == "b7ad6b7169203331"


def test_missing_or_garbage_traceparent_gives_no_context():
    for tp in (None, "", "not-a-traceparent"):
        assert not trace.get_current_span(context_from_traceparent(tp)).get_span_context().is_valid
