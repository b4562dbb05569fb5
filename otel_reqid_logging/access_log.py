"""The aiohttp access log line, carrying the ids of the request it describes."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from contextvars import copy_context

from aiohttp import web
from aiohttp.web_log import AccessLogger
from opentelemetry import context as otel_context
from opentelemetry import trace

from ._context import (
    EXCLUDED_KEY,
    REQUEST_IDS_KEY,
    REQUEST_OTEL_CONTEXT_KEY,
    RequestIds,
    _ids,
    request_id,
)
from ._message_ids import _GUNICORN_ACCESS, message_with_ids
from ._record_values import attributes_here

__all__ = ["RequestIdAccessLogger"]

_AccessLog = Callable[[AccessLogger, web.BaseRequest, web.StreamResponse, float], None]


class _AccessLineFilter(logging.Filter):
    """Gives access records the ids even where the record factory is not installed.

    Put on the access logger itself, so only its records pass through it. It never
    raises: a failing filter would make aiohttp drop the line for "Error in logging".
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the ids in effect to ``record`` unless the factory did; keep every record."""
        attributes = record.__dict__
        try:
            if "request_id" not in attributes:
                attributes.update(attributes_here())
            if record.name == _GUNICORN_ACCESS and isinstance(record.msg, str):
                # gunicorn prints the message alone: there the ids go into its text.
                record.msg = message_with_ids(record.name, record.msg, attributes)
        except Exception:
            return True  # the line goes out without ids rather than not at all
        return True


_FILTER = _AccessLineFilter()
# The loggers that got the filter, so that the instrumentor can take it off again.
_filtered: weakref.WeakSet[logging.Logger] = weakref.WeakSet()


def _remove_filters() -> None:
    """Take the filter off every access logger it was put on."""
    for logger in list(_filtered):
        logger.removeFilter(_FILTER)
    _filtered.clear()


def _otel_context_of(ids: RequestIds) -> otel_context.Context:
    """Return an OpenTelemetry context with the span of ``ids`` current.

    For a request whose ids came without the context the middleware leaves on it.
    """
    span_context = trace.SpanContext(
        trace_id=int(ids.trace_id, 16),
        span_id=int(ids.span_id, 16),
        is_remote=False,
        trace_flags=trace.TraceFlags(ids.trace_flags),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


def _log_with_ids(
    log: _AccessLog,
    access_logger: AccessLogger,
    request: web.BaseRequest,
    response: web.StreamResponse,
    time: float,
) -> None:
    """Run aiohttp's ``log`` for one request with the request's ids in effect.

    aiohttp writes the access line after the middlewares have returned, when the
    ContextVars of the request are already reset. For the line they are set again from
    the ids stored on the request, and the request's span context is made current, so
    that the record factory, the filter and OpenTelemetry's log export all see them.
    If any of that fails, aiohttp writes its plain line: an access line is never lost.
    """
    ids: RequestIds | None = None
    try:
        # The request's keys at once: a key missing from a request costs a KeyError
        # raised and caught inside aiohttp's mapping, which is_excluded() would pay for
        # every request that is not excluded (docs/performance.md counts it). A request
        # that is no real one (a test double) fails here, and gets aiohttp's plain line.
        keys = set(request)
        if EXCLUDED_KEY in keys:  # is_excluded(request): excluded_urls, no access line
            return
        logger = access_logger.logger
        if isinstance(logger, logging.Logger) and _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
            _filtered.add(logger)
        if REQUEST_IDS_KEY in keys:
            ids = request[REQUEST_IDS_KEY]
            # In effect already (a wrapped call): aiohttp's line as is.
            if _ids.get() is ids:
                ids = None
            elif REQUEST_OTEL_CONTEXT_KEY in keys:
                request_context = request[REQUEST_OTEL_CONTEXT_KEY]
            else:
                request_context = _otel_context_of(ids)
    except Exception:
        ids = None
    if ids is None:
        log(access_logger, request, response, time)
        return
    # In a copy of the current context, thrown away afterwards: setting the request's
    # ContextVars there needs no reset, and the handler's own ContextVars stay visible.
    copy_context().run(
        _write_line, log, access_logger, request, response, time, ids, request_context
    )


def _write_line(  # noqa: PLR0917  (called positionally by Context.run)
    log: _AccessLog,
    access_logger: AccessLogger,
    request: web.BaseRequest,
    response: web.StreamResponse,
    time: float,
    ids: RequestIds,
    request_context: otel_context.Context,
) -> None:
    """Set the request's ids and span context in the running context, then write the line."""
    try:
        _ids.set(ids)
        request_id.set(ids.request_id)
        otel_context.attach(request_context)  # never detached: the context is a copy
    except Exception:  # noqa: S110
        pass  # the line goes out with what could be set rather than not at all
    log(access_logger, request, response, time)


class RequestIdAccessLogger(AccessLogger):
    """aiohttp's AccessLogger whose records carry the request's ids.

    The ids become record attributes (for JSON formatters and for formats such as
    ``%(request_id)s``) whether or not the record factory is installed. Use it with
    ``web.run_app(app, access_log_class=RequestIdAccessLogger)``.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write aiohttp's access line of one request with the request's ids."""
        _log_with_ids(AccessLogger.log, self, request, response, time)
