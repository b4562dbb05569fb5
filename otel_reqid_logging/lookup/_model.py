"""A small trace model shared by every store, and a reader of OTLP JSON `resourceSpans`."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = [
    "REQUEST_ID_ATTRIBUTE",
    "AttributeValue",
    "Span",
    "SpanEvent",
    "Trace",
    "group_traces",
    "parse_resource_spans",
]

REQUEST_ID_ATTRIBUTE = "request.id"

AttributeValue: TypeAlias = (
    "str | int | float | bool | bytes | list[AttributeValue] | dict[str, AttributeValue] | None"
)

# OTLP's SpanKind and StatusCode enums, which OTLP JSON writes as integers.
_KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUSES = {0: "UNSET", 1: "OK", 2: "ERROR"}


@dataclass(frozen=True)
class SpanEvent:
    """Something that happened at one moment of a span (an exception, a retry)."""

    name: str
    time_ns: int
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    """One span, as much of it as a person needs to read a trace."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    status: str = "UNSET"
    status_message: str = ""
    kind: str | None = None
    service: str | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()

    @property
    def duration_ms(self) -> float:
        """Length of the span in milliseconds (never negative)."""
        return max(self.end_ns - self.start_ns, 0) / 1e6

    @property
    def request_id(self) -> str | None:
        """The short request id this span carries, if any."""
        value = self.attributes.get(REQUEST_ID_ATTRIBUTE)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Trace:
    """All spans found for one trace id, in start order."""

    trace_id: str
    spans: tuple[Span, ...]

    @property
    def start_ns(self) -> int:
        """When the earliest span started."""
        return min((span.start_ns for span in self.spans), default=0)


def group_traces(spans: Iterable[Span]) -> list[Trace]:
    """Group spans by trace id, each span once; the most recently started trace comes first."""
    by_trace: dict[str, dict[str, Span]] = {}
    for span in spans:
        # A span exported twice (a retried batch) is shown once.
        by_trace.setdefault(span.trace_id, {}).setdefault(span.span_id, span)
    traces = [
        Trace(trace_id, tuple(sorted(members.values(), key=lambda s: (s.start_ns, s.span_id))))
        for trace_id, members in by_trace.items()
    ]
    traces.sort(key=lambda t: t.start_ns, reverse=True)
    return traces


def parse_resource_spans(resource_spans: object) -> Iterator[Span]:
    """Yield the spans of an OTLP JSON `resourceSpans` list; raise ValueError on a bad shape."""
    try:
        yield from _resource_spans(resource_spans)
    except (TypeError, AttributeError, KeyError) as error:
        raise ValueError(f"not OTLP JSON spans: {type(error).__name__}") from error


def _resource_spans(resource_spans: object) -> Iterator[Span]:
    for resource_span in _list(resource_spans, "resourceSpans"):
        resource = _dict(resource_span, "resourceSpans[]").get("resource") or {}
        resource_attributes = _attributes(_dict(resource, "resource").get("attributes"))
        service = resource_attributes.get("service.name")
        for scope_span in _list(resource_span.get("scopeSpans") or [], "scopeSpans"):
            for raw in _list(_dict(scope_span, "scopeSpans[]").get("spans") or [], "spans"):
                yield _span(_dict(raw, "span"), service if isinstance(service, str) else None)


def _span(raw: dict[str, Any], service: str | None) -> Span:
    status = raw.get("status") or {}
    parent = raw.get("parentSpanId")
    return Span(
        trace_id=_id(raw.get("traceId"), 16),
        span_id=_id(raw.get("spanId"), 8),
        parent_span_id=_id(parent, 8) if parent else None,
        name=str(raw.get("name", "")),
        start_ns=int(raw.get("startTimeUnixNano", 0)),
        end_ns=int(raw.get("endTimeUnixNano", 0)),
        status=_enum(status.get("code", 0), _STATUSES, "STATUS_CODE_"),
        status_message=str(status.get("message", "")),
        kind=_enum(raw.get("kind", 0), _KINDS, "SPAN_KIND_") or None,
        service=service,
        attributes=_attributes(raw.get("attributes")),
        events=tuple(
            _event(_dict(event, "event")) for event in _list(raw.get("events") or [], "events")
        ),
    )


def _event(raw: dict[str, Any]) -> SpanEvent:
    return SpanEvent(
        name=str(raw.get("name", "")),
        time_ns=int(raw.get("timeUnixNano", 0)),
        attributes=_attributes(raw.get("attributes")),
    )


def _id(value: object, size: int) -> str:
    """Return an id as lowercase hex.

    OTLP JSON writes ids as hex, but protobuf's generic JSON mapping writes them as
    base64; accepting both lets a file made by either kind of writer be read.
    """
    if not isinstance(value, str):
        raise ValueError(f"span id is not a string: {value!r}")
    if len(value) == 2 * size:
        try:
            bytes.fromhex(value)
        except ValueError:
            pass
        else:
            return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != size:
        raise ValueError(f"not a {size}-byte id: {value[:40]!r}")
    return raw.hex()


def _enum(value: object, names: Mapping[int, str], prefix: str) -> str:
    """Map an OTLP enum written as an integer, or as its proto name, to a short name."""
    if isinstance(value, str):
        return value.removeprefix(prefix)
    if isinstance(value, int):
        return names.get(value, "")
    return ""


def _attributes(raw: object) -> dict[str, AttributeValue]:
    if raw is None:
        return {}
    result: dict[str, AttributeValue] = {}
    for item in _list(raw, "attributes"):
        entry = _dict(item, "attribute")
        result[str(entry.get("key", ""))] = _any_value(entry.get("value"))
    return result


def _any_value(raw: object) -> AttributeValue:
    """Convert an OTLP JSON AnyValue (`{"stringValue": ...}` and friends) to Python."""
    if not isinstance(raw, dict) or not raw:
        return None
    kind, value = next(iter(raw.items()))
    convert = _ANY_VALUE.get(kind)
    return convert(value) if convert is not None else None


_ANY_VALUE: dict[str, Callable[[Any], AttributeValue]] = {
    "stringValue": str,
    "boolValue": bool,
    # 64-bit integers are JSON strings in OTLP JSON.
    "intValue": int,
    "doubleValue": float,
    "bytesValue": lambda value: base64.b64decode(str(value)),
    "arrayValue": lambda value: [_any_value(v) for v in _list(value.get("values") or [], "array")],
    "kvlistValue": lambda value: _attributes(value.get("values") or []),
}


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return value


def _dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not an object")
    return value
