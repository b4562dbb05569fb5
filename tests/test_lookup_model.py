"""Reading OTLP JSON spans into the lookup's small model."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.json.file import FileSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_reqid_logging.lookup import parse_resource_spans
from otel_reqid_logging.lookup._model import group_traces

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def resource_spans(span: Mapping[str, object]) -> list[object]:
    return [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
            "scopeSpans": [{"scope": {"name": "t"}, "spans": [span]}],
        }
    ]


def test_fields_and_attribute_types() -> None:
    """Kinds, status, times and every AnyValue type come out as Python values."""
    (span,) = parse_resource_spans(
        resource_spans(
            {
                "traceId": TRACE,
                "spanId": "00f067aa0ba902b7",
                "parentSpanId": "",
                "name": "GET /",
                "kind": 2,
                "startTimeUnixNano": "1000000",
                "endTimeUnixNano": "3500000",
                "status": {"code": 2, "message": "boom"},
                "attributes": [
                    {"key": "i", "value": {"intValue": "9007199254740993"}},
                    {"key": "d", "value": {"doubleValue": 1.5}},
                    {"key": "b", "value": {"boolValue": True}},
                    {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "x"}]}}},
                    {
                        "key": "k",
                        "value": {
                            "kvlistValue": {"values": [{"key": "n", "value": {"intValue": "1"}}]}
                        },
                    },
                    {"key": "y", "value": {"bytesValue": base64.b64encode(b"\x01").decode()}},
                ],
            }
        )
    )

    assert span.parent_span_id is None
    assert span.kind == "SERVER"
    assert span.status == "ERROR"
    assert span.status_message == "boom"
    assert span.duration_ms == 2.5
    assert span.service == "shop"
    assert span.attributes == {
        "i": 9007199254740993,
        "d": 1.5,
        "b": True,
        "a": ["x"],
        "k": {"n": 1},
        "y": b"\x01",
    }


def test_base64_ids_and_named_enums_are_accepted() -> None:
    """Protobuf's generic JSON mapping (base64 ids, enum names) reads the same as OTLP JSON."""
    (span,) = parse_resource_spans(
        resource_spans(
            {
                "traceId": base64.b64encode(bytes.fromhex(TRACE)).decode(),
                "spanId": base64.b64encode(bytes.fromhex("00f067aa0ba902b7")).decode(),
                "name": "x",
                "kind": "SPAN_KIND_CLIENT",
                "status": {"code": "STATUS_CODE_OK"},
            }
        )
    )

    assert (span.trace_id, span.span_id) == (TRACE, "00f067aa0ba902b7")
    assert (span.kind, span.status) == ("CLIENT", "OK")


@pytest.mark.parametrize(
    "bad",
    [
        {"not": "a list"},
        [{"scopeSpans": [{"spans": [{"traceId": "xyz", "spanId": "00f067aa0ba902b7"}]}]}],
        [{"scopeSpans": [{"spans": [{"traceId": TRACE, "spanId": 7}]}]}],
        [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": TRACE,
                                "spanId": "00f067aa0ba902b7",
                                "startTimeUnixNano": None,
                            }
                        ]
                    }
                ]
            }
        ],
    ],
)
def test_bad_shapes_raise_value_error(bad: object) -> None:
    """Anything that is not OTLP JSON spans raises ValueError, the one error callers catch."""
    with pytest.raises(ValueError, match=r"."):
        list(parse_resource_spans(bad))


def test_duplicate_spans_are_kept_once() -> None:
    """A batch exported twice does not double the spans of the trace."""
    raw = {"traceId": TRACE, "spanId": "00f067aa0ba902b7", "name": "x"}
    spans = list(parse_resource_spans(resource_spans(raw) + resource_spans(raw)))

    (trace,) = group_traces(spans)

    assert len(trace.spans) == 1


def test_events_as_the_sdk_exports_them(tmp_path: Path) -> None:
    """A span's events (an exception recorded by the SDK, one added by hand) come out in
    order with their times and attributes; a span without events has none."""
    path = tmp_path / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("pay") as span:
        span.add_event("retry", {"attempt": 2})
        span.record_exception(ValueError("card <declined>"))
    with tracer.start_as_current_span("quiet"):
        pass
    provider.shutdown()

    spans = [
        parsed
        for line in path.read_text().splitlines()
        for parsed in parse_resource_spans(json.loads(line)["resourceSpans"])
    ]

    pay, quiet = spans
    assert [event.name for event in pay.events] == ["retry", "exception"]
    assert pay.events[0].attributes == {"attempt": 2}
    assert pay.events[1].attributes["exception.message"] == "card <declined>"
    assert pay.start_ns <= pay.events[0].time_ns <= pay.events[1].time_ns <= pay.end_ns
    assert quiet.events == ()
