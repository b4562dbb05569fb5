"""Where the ids of the running request live: ContextVars and request keys."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from aiohttp import web

__all__ = [
    "REQUEST_IDS_KEY",
    "REQUEST_ID_KEY",
    "RequestIds",
    "current_ids",
    "current_request_id",
    "current_trace_id",
    "request_id",
]


class RequestIds:
    """The ids of one request, and the log record attributes made from them.

    Built once per request, so that every log record of the request (and its access
    line) only copies a ready dict instead of formatting ids again.
    """

    __slots__ = ("record_attrs", "request_id", "sampled", "span_id", "trace_id")

    def __init__(
        self, *, request_id: str, trace_id: int, span_id: int, sampled: bool, service_name: str
    ) -> None:
        self.request_id = request_id
        self.trace_id = format(trace_id, "032x")
        self.span_id = format(span_id, "016x")
        self.sampled = sampled
        self.record_attrs: dict[str, Any] = {
            "request_id": request_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "trace_sampled": sampled,
            "requestIdPrefix": f"[req:{request_id}] ",
            "otelTraceID": self.trace_id,
            "otelSpanID": self.span_id,
            "otelTraceSampled": sampled,
            "otelServiceName": service_name,
        }

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

current_ids = _ids.get


def current_request_id() -> str | None:
    """Return the short request id of the running request, or None outside a request."""
    return request_id.get()


def current_trace_id() -> str | None:
    """Return the trace id (32 hex digits) of the running request, or None outside one."""
    ids = _ids.get()
    return None if ids is None else ids.trace_id
