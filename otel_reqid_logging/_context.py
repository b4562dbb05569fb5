"""Where the ids of the running request live: ContextVars and request keys."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, NamedTuple

from aiohttp import web
from opentelemetry.context import Context


class RecordValues(NamedTuple):
    """The log record attributes every record carries: the one table of them.

    Its fields are the attribute names, in the order records get them; everything that
    writes or reads the attributes goes through it (``RECORD_ATTRIBUTES`` is its names).
    Values are built by name, so no other place spells the order out.
    """

    request_id: str
    trace_id: str
    span_id: str
    trace_sampled: bool
    requestIdPrefix: str  # noqa: N815  (the ancestor's name)
    otelTraceID: str  # noqa: N815  (OpenTelemetry's names, as its logging instrumentation has them)
    otelSpanID: str  # noqa: N815
    otelTraceSampled: bool  # noqa: N815
    otelServiceName: str  # noqa: N815


RECORD_ATTRIBUTES: tuple[str, ...] = RecordValues._fields
# A dict's values for the record attributes, as a tuple in the table's order.
_in_table_order: Callable[[Mapping[str, Any]], tuple[Any, ...]] = operator.itemgetter(
    *RECORD_ATTRIBUTES
)

__all__ = [
    "EXCLUDED_KEY",
    "RECORD_ATTRIBUTES",
    "REQUEST_IDS_KEY",
    "REQUEST_ID_KEY",
    "REQUEST_OTEL_CONTEXT_KEY",
    "RecordValues",
    "RequestIds",
    "current_request_id",
    "current_trace_id",
    "request_id",
]


class RequestIds:
    """The ids of one request, and the log record attributes made from them.

    Built once per request, so that every log record of the request (and its access
    line) only copies ready values instead of formatting ids again.
    """

    __slots__ = (
        "_record_attrs",
        "context",
        "record_template",
        "record_values",
        "request_id",
        "sampled",
        "span_id",
        "trace_flags",
        "trace_id",
    )

    def __init__(
        self,
        *,
        request_id: str,
        trace_id: int,
        span_id: int,
        sampled: bool,
        sampled_flag: bool,
        service_name: str,
        trace_flags: int | None = None,
    ) -> None:
        """Keep one request's ids.

        ``sampled`` says whether this service records the span and exports it (the
        ``trace_sampled`` attribute); ``sampled_flag`` is the W3C sampled flag of its
        context (``otelTraceSampled``, as OpenTelemetry's logging instrumentation has it);
        ``trace_flags`` all its W3C flags (default: just the sampled one).
        """
        self.request_id = request_id
        # %-formatting: half the cost of format() or an f-string for these.
        self.trace_id = trace_hex = "%032x" % trace_id  # noqa: UP031
        self.span_id = span_hex = "%016x" % span_id  # noqa: UP031
        self.sampled = sampled
        self.trace_flags = int(sampled_flag) if trace_flags is None else trace_flags
        # The record attributes by name, and their values in the table's order as a
        # plain tuple, which the record class unpacks (a NamedTuple built by keyword
        # would cost a Python call more per request, and its unpacking is slower).
        self._record_attrs: dict[str, Any] = {
            "request_id": request_id,
            "trace_id": trace_hex,
            "span_id": span_hex,
            "trace_sampled": sampled,
            "requestIdPrefix": f"[req:{request_id}] ",
            "otelTraceID": trace_hex,
            "otelSpanID": span_hex,
            "otelTraceSampled": sampled_flag,
            "otelServiceName": service_name,
        }
        self.record_values: tuple[Any, ...] = _in_table_order(self._record_attrs)
        # The OpenTelemetry context the request's own span is current in, once a record
        # has met it: a record made there takes the request's values without looking for
        # the current span (records in a child span carry the child's span id).
        self.context: Context | None = None
        # The record values as a whole record's dict, on Pythons where records start
        # from one (made on first use; see _record_values.IdsDictLogRecord).
        self.record_template: dict[str, Any] | None = None

    @property
    def record_attrs(self) -> dict[str, Any]:
        """The log record attributes as a dict (``record_values`` by name)."""
        return self._record_attrs

    def __repr__(self) -> str:
        return (
            f"RequestIds(request_id={self.request_id!r}, trace_id={self.trace_id!r}, "
            f"span_id={self.span_id!r}, sampled={self.sampled!r})"
        )


# Two variables on purpose: `request_id` keeps the meaning it had in
# aiohttp-request-id-logging (a plain string), `_ids` carries everything else.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_ids: ContextVar[RequestIds | None] = ContextVar("otel_reqid_logging_ids", default=None)

REQUEST_ID_KEY = web.RequestKey("request_id", str)
REQUEST_IDS_KEY = web.RequestKey("otel_reqid_logging.ids", RequestIds)
# Set on a request that ``excluded_urls`` leaves alone: no span, no ids, no access line.
EXCLUDED_KEY = web.RequestKey("otel_reqid_logging.excluded", bool)
# The OpenTelemetry context the request ran in (its span current), for the access line.
REQUEST_OTEL_CONTEXT_KEY = web.RequestKey("otel_reqid_logging.otel_context", Context)


def current_request_id() -> str | None:
    """Return the short request id of the running request, or None outside a request."""
    return request_id.get()


def current_trace_id() -> str | None:
    """Return the trace id (32 hex digits) of the running request, or None outside one."""
    ids = _ids.get()
    return None if ids is None else ids.trace_id
