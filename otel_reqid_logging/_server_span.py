"""The SERVER span this library starts for a request, and the request's metrics.

``ServerSpans.start`` reads the request once into what its span and its metric points
carry (``_semconv``), starts both, and hands back the span and an ``OwnSpan``; the
middleware tells the ``OwnSpan`` how the request went and then ends it.
"""

from __future__ import annotations

import random
from typing import Any

from aiohttp import web
from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import (
    DEFAULT_TRACE_OPTIONS,
    DEFAULT_TRACE_STATE,
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    NonRecordingSpan,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
)

from ._captured_headers import HeaderCapture, header_capture
from ._incoming import NOTHING_INCOMING, incoming_context
from ._metrics import Measurement, MetricsSource, ServerMetrics
from ._semconv import (
    Conventions,
    Mode,
    _known_method,
    conventions_for,
    opt_in_mode,
    route_of,
    span_name,
)
from ._version import __version__

__all__ = ["TRACER_NAME", "OwnSpan", "ServerSpans"]

#: The instrumentation scope of the spans (and metrics) this library records.
TRACER_NAME = "otel_reqid_logging"

_random_bits = random.getrandbits
# Providers whose tracers never record: the API's default, before any SDK is set up.
_NOTHING_RECORDS = (ProxyTracerProvider, NoOpTracerProvider)


class OwnSpan:
    """The SERVER span this library started for a request, and the request's metrics.

    The middleware tells it how the request went (``responded``, ``failed``,
    ``cancelled``); ``end`` records the duration and ends the span.
    """

    __slots__ = (
        "_cancelled",
        "_capture",
        "_conventions",
        "_measurement",
        "_pending",
        "request_id",
        "span",
    )

    def __init__(
        self,
        span: Span,
        conventions: Conventions,
        measurement: Measurement | None,
        capture: HeaderCapture,
    ) -> None:
        self.span = span
        self._conventions = conventions
        self._measurement = measurement
        self._capture = capture
        self._cancelled = False
        # Attributes known during the request, set on the span in one call when it ends:
        # each set_attribute call costs the SDK a lock and a validation pass.
        self._pending: dict[str, Any] = {}
        #: The request id, put on the span (``request.id``) when it ends.
        self.request_id = ""

    def responded(
        self,
        status: int,
        exception: BaseException | None = None,
        headers: Any = None,
    ) -> None:
        """Record the response status; a 5xx marks the span as failed.

        ``exception`` is the ``HTTPException`` that carried the status; a 5xx one is
        recorded on the span as an event. ``headers``: the response's, for the headers
        captured as attributes (OpenTelemetry captures none of an ``HTTPException``).
        """
        pending = self._pending
        measurement = self._measurement
        outcome = pending if measurement is None else measurement.outcome
        failed = self._conventions.status_attributes(status, outcome)
        if measurement is not None:
            pending.update(outcome)
        span = self.span
        if span.is_recording():
            if failed:
                span.set_status(Status(StatusCode.ERROR))
                if exception is not None:
                    span.record_exception(exception)
            capture = self._capture.response
            if headers is not None and capture is not None:
                pending.update(capture.attributes(headers.items()))

    def failed(self, exception: BaseException) -> None:
        """Record an exception that left the handler (aiohttp answers it, not the span).

        The span gets the exception event, an error status and, in the stable
        conventions, ``error.type`` (the class name), as OpenTelemetry's; no status code.
        """
        measurement = self._measurement
        outcome = self._pending if measurement is None else measurement.outcome
        description = self._conventions.exception_attributes(exception, outcome)
        if measurement is not None:
            self._pending.update(outcome)
        span = self.span
        if span.is_recording():
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, description))

    def cancelled(self) -> None:
        """Note that the request was cancelled (the client went away)."""
        self._cancelled = True

    def end(self) -> None:
        """Record the request's metrics (inside its span, for exemplars) and end the span."""
        if self._measurement is not None:
            self._measurement.end()
        span = self.span
        if span.is_recording():
            pending = self._pending
            pending["request.id"] = self.request_id
            if self._cancelled:
                self._conventions.cancelled_attributes(pending)
            span.set_attributes(pending)
        span.end()


class ServerSpans:
    """Starts the SERVER spans (and metric measurements) of one middleware's requests."""

    __slots__ = ("_capture", "_metrics", "_tracer", "conventions")

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: MeterProvider | None,
        mode: Mode | None = None,
    ) -> None:
        """Read the convention mode (unless given) and the captured headers.

        ``tracer_provider`` and ``meter_provider`` None follow the global ones.
        """
        self.conventions = conventions_for(opt_in_mode() if mode is None else mode)
        self._capture = header_capture()
        self._tracer = trace.get_tracer(
            TRACER_NAME, __version__, tracer_provider, schema_url=self.conventions.schema_url
        )
        self._metrics = MetricsSource(meter_provider, self.conventions)

    def metrics(self) -> ServerMetrics | None:
        """Return the instruments to record with, or None while nothing would record."""
        return self._metrics.get()

    def start(
        self, request: web.BaseRequest, provider: trace.TracerProvider, suppressed: bool = False
    ) -> tuple[Span, OwnSpan | None]:
        """Start the request's span; with ``suppressed`` (or no SDK) make up its ids only.

        The ``OwnSpan`` is None when there is nothing to end: no span that records and
        no metrics (``suppress_http_instrumentation()`` turns both off, as it does
        OpenTelemetry's).
        """
        parent = incoming_context(request)
        metrics = None if suppressed else self._metrics.get()
        attributes: dict[str, Any] | None = None
        span: Span | None = None
        if suppressed or isinstance(provider, _NOTHING_RECORDS):
            # A tracer would only hand back the caller's span, so the name and the
            # attributes it would drop are not built unless the metrics need them.
            context = None
            if parent is not NOTHING_INCOMING:
                context = trace.get_current_span(parent).get_span_context()
        else:
            route = route_of(request)
            method = _known_method(request.method)
            attributes = self.conventions.request_attributes(request, method, route)
            capture = self._capture.request
            if capture is not None:
                attributes.update(capture.attributes(request.headers.items()))
            span = self._tracer.start_span(
                span_name(method, route),
                context=parent,
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            )
            context = span.get_span_context()
            if not context.is_valid or context.is_remote:
                span = None
        if span is None:
            span = _span_of_ids(context)
        if metrics is None:
            if not span.is_recording():
                return span, None
            measurement = None
        else:
            if attributes is None:
                method = _known_method(request.method)
                attributes = self.conventions.request_attributes(request, method, route_of(request))
            measurement = metrics.start(attributes)
        return span, OwnSpan(span, self.conventions, measurement, self._capture)


def _span_of_ids(caller: SpanContext | None) -> Span:
    """Return a span that records nothing but gives the request ids of its own.

    Nothing records: the API hands back the caller's context (or nothing). The request
    still gets ids, continuing the caller's trace if there is one.
    """
    if caller is None or not caller.is_valid:
        return NonRecordingSpan(
            SpanContext(
                _new_id(128, INVALID_TRACE_ID),
                _new_id(64, INVALID_SPAN_ID),
                False,
                DEFAULT_TRACE_OPTIONS,
                DEFAULT_TRACE_STATE,
            )
        )
    return NonRecordingSpan(
        SpanContext(
            trace_id=caller.trace_id,
            span_id=_new_id(64, INVALID_SPAN_ID),
            is_remote=False,
            trace_flags=caller.trace_flags,
            trace_state=caller.trace_state,
        )
    )


def _new_id(bits: int, invalid: int) -> int:
    """Return a random id of ``bits`` bits that is not the all-zero invalid id."""
    value = _random_bits(bits)
    while value == invalid:
        value = _random_bits(bits)
    return value
