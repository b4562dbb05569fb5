"""The aiohttp access log line, carrying the ids of the request it describes."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.web_log import AccessLogger
from opentelemetry import context as otel_context
from opentelemetry import trace

from ._context import REQUEST_IDS_KEY, RequestIds
from ._excluded import is_excluded
from ._message_ids import message_with_ids
from .records import attributes_for

__all__ = ["RequestIdAccessLogger", "log_with_ids"]


def log_with_ids(
    access_logger: AccessLogger,
    request: web.BaseRequest,
    response: web.StreamResponse,
    time: float,
) -> None:
    """Write ``access_logger``'s line for one request, with the request's ids on the record.

    aiohttp writes the access line after the middlewares have returned, when the
    ContextVars of the request are already reset, so the ids are read from the request.
    """
    if is_excluded(request):  # excluded_urls: no access line
        return
    logger = access_logger.logger
    try:
        extra: dict[str, object] = {}
        values = []
        for key, value in access_logger._format_line(request, response, time):
            values.append(value)
            if isinstance(key, str):
                extra[key] = value
            else:
                group, name = key
                fields = extra.setdefault(group, {})
                fields[name] = value  # type: ignore[index]
        # Built by hand rather than with ``extra=``: makeRecord refuses extra keys that
        # the record factory has already set. It also skips findCaller, which would only
        # name aiohttp's own file.
        ids = request.get(REQUEST_IDS_KEY)
        attrs = attributes_for(ids)
        record = logger.makeRecord(
            logger.name,
            logging.INFO,
            __file__,
            0,
            message_with_ids(logger, access_logger._log_format % tuple(values), attrs),
            (),
            None,
        )
        record.__dict__.update(extra)
        record.__dict__.update(attrs)
        # The request's span is over, but handlers that read the current OpenTelemetry
        # context (its log export) must still see it for this line.
        token = None if ids is None else otel_context.attach(_span_context_of(ids))
        try:
            logger.handle(record)
        finally:
            if token is not None:
                otel_context.detach(token)
    except Exception:
        logger.exception("Error in logging")


def _span_context_of(ids: RequestIds) -> otel_context.Context:
    """Return an OpenTelemetry context whose current span is the request's (ended) span."""
    span_context = trace.SpanContext(
        trace_id=int(ids.trace_id, 16),
        span_id=int(ids.span_id, 16),
        is_remote=False,
        trace_flags=trace.TraceFlags(
            trace.TraceFlags.SAMPLED if ids.record_attrs["otelTraceSampled"] else 0
        ),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


class RequestIdAccessLogger(AccessLogger):
    """aiohttp's AccessLogger whose records carry the request's ids.

    The ids become record attributes (for JSON formatters and for formats such as
    ``%(request_id)s``) whether or not the record factory is installed. Use it with
    ``web.run_app(app, access_log_class=RequestIdAccessLogger)``.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write the access line of one request with its ids."""
        log_with_ids(self, request, response, time)
