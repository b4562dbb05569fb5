"""aiohttp's own error line of a failed request is written in that request's ids.

The middleware lets an unhandled exception go on to aiohttp, which logs it ("Error
handling request", on its server logger) and builds the 500. By then the middleware has
returned and reset the request's ContextVars. The request is found again from the
exception itself: its traceback holds the middleware's frame, and that frame holds the
request's ids and OpenTelemetry context. A filter on aiohttp's server logger puts the
ids on the record and hands it to the handlers with the request's ids and span context
current (in a copy of the running context, thrown away afterwards), as the access line
is written: the record factory's attributes, a structlog processor, OpenTelemetry's log
export and Sentry's LoggingIntegration (in the request's own Sentry scope) all see the
request.
aiohttp's line about a handler that returned no response is about no exception of the
request: that request is found in aiohttp's frame that logs the line (its local
``request``), without its Sentry scope.
Nothing is stored, and nothing outlives the exception.
"""

from __future__ import annotations

import inspect
import logging
import sys
import weakref
from contextlib import suppress
from contextvars import ContextVar, copy_context
from types import CodeType
from typing import NamedTuple

from aiohttp import web
from opentelemetry import context as otel_context

from ._context import REQUEST_IDS_KEY, REQUEST_OTEL_CONTEXT_KEY, RequestIds, _ids, request_id
from .sentry import _scope_again

__all__ = [
    "register_carrier",
    "remove_error_line_filters",
    "watch_server_logger",
]

# The code of the functions whose frames hold a request's ids in a local named `ids`,
# its OpenTelemetry context in `request_context` and its Sentry scope in `scope` (the
# middleware registers its __call__).
_CARRIERS: set[CodeType] = set()
# How far along __cause__ / __context__ to look: a wrapping exception or two.
_MAX_CHAINED = 8
# How many frames up from the filter to look for aiohttp's frame that logs (about 8).
_MAX_FRAMES = 24
# aiohttp's frame that logs the line about a handler's answer that is no response, with
# the request in its local ``request``: its module and function. Only that short-lived
# frame is read: reading the locals of a frame that runs on (the connection's loop) would
# keep them alive in it, up to Python 3.12.
_AIOHTTP_PROTOCOL = "aiohttp.web_protocol"
_AIOHTTP_FUNCTION = "finish_response"
# Set while a record is handed on in its request's context: the filter lets it through.
_handing_on: ContextVar[bool] = ContextVar("otel_reqid_logging_error_line", default=False)


def register_carrier(code: CodeType) -> None:
    """Name a function whose frames hold ``ids``, ``request_context`` and ``scope``."""
    _CARRIERS.add(code)


class _FailedRequest(NamedTuple):
    """What the frame of a failed request's middleware holds."""

    ids: RequestIds
    context: otel_context.Context | None
    sentry_scope: object  # the request's Sentry scope (from ``sentry._request_scope``)


def _request_of_exception(exception: BaseException | None) -> _FailedRequest | None:
    """Return what is known of the request an exception escaped from, or None.

    Follows ``__cause__`` and ``__context__``, so that an exception an outer middleware
    raised while handling the request's own still finds its request.
    """
    for _ in range(_MAX_CHAINED):
        if exception is None:
            return None
        traceback = exception.__traceback__
        while traceback is not None:
            frame = traceback.tb_frame
            if frame.f_code in _CARRIERS:
                local = frame.f_locals
                ids = local.get("ids")
                if isinstance(ids, RequestIds):
                    request_context = local.get("request_context")
                    if not isinstance(request_context, otel_context.Context):
                        request_context = None
                    return _FailedRequest(ids, request_context, local.get("scope"))
            traceback = traceback.tb_next
        exception = exception.__cause__ or exception.__context__
    return None


def _request_on_stack() -> _FailedRequest | None:
    """Return the request whose answer aiohttp's frame that logs this line is writing.

    For the line about a handler that returned no response: aiohttp logs it after the
    middleware has returned, about an exception of its own, from
    ``aiohttp.web_protocol``'s ``finish_response``, whose local ``request`` is the
    request; None when no such frame holds one of ours (another aiohttp, another line).
    """
    frame = inspect.currentframe()
    try:
        for _ in range(_MAX_FRAMES):
            if frame is None:
                return None
            if (
                frame.f_code.co_name == _AIOHTTP_FUNCTION
                and frame.f_globals.get("__name__") == _AIOHTTP_PROTOCOL
            ):
                request = frame.f_locals.get("request")
                ids = request.get(REQUEST_IDS_KEY) if isinstance(request, web.BaseRequest) else None
                if isinstance(ids, RequestIds):
                    context = request.get(REQUEST_OTEL_CONTEXT_KEY)  # type: ignore[union-attr]
                    if not isinstance(context, otel_context.Context):
                        context = None
                    return _FailedRequest(ids, context, None)
            frame = frame.f_back
        return None
    finally:
        del frame  # no cycle through this frame


def _hand_on(logger: logging.Logger, record: logging.LogRecord, failed: _FailedRequest) -> None:
    """Pass ``record`` to the logger's handlers with the request's ids in effect."""
    _handing_on.set(True)
    ids = failed.ids
    _ids.set(ids)
    request_id.set(ids.request_id)
    if failed.context is not None:
        otel_context.attach(failed.context)  # never detached: the context is a copy
    scope = _scope_again(failed.sentry_scope)
    if scope is None:
        logger.handle(record)
    else:
        with scope:
            logger.handle(record)


class _ErrorLineFilter(logging.Filter):
    """Writes a record that logs a request's exception in that request's ids.

    Put on aiohttp's server logger, whose error lines are written after the request's
    ContextVars are gone. A record it finds a request for is handed on to the handlers
    in the request's context, and the original pass stops; any other record passes as
    it came. It never raises, and a record always goes out exactly once.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Hand a failed request's record on in the request's context; keep all others."""
        if _handing_on.get():
            return True
        try:
            exc_info = record.exc_info
            # aiohttp's line for a timeout (its 504) names no exception, but is logged
            # while handling it.
            exception = exc_info[1] if exc_info else sys.exc_info()[1]
            failed = _request_of_exception(exception)
            if failed is None and exception is not None and _ids.get() is None:
                failed = _request_on_stack()
            if failed is None:
                return True
            record.__dict__.update(failed.ids.record_attrs)
            logger = logging.getLogger(record.name)
            if self not in logger.filters:
                return True  # not on the record's own logger: it goes on from here
        except Exception:
            return True  # the line goes out as it is rather than not at all
        # Once handed on, never a second pass, which would write the line twice.
        with suppress(Exception):
            copy_context().run(_hand_on, logger, record, failed)
        return False


_FILTER = _ErrorLineFilter()
# The loggers that got the filter, so that the instrumentor can take it off again.
_filtered: weakref.WeakSet[logging.Logger] = weakref.WeakSet()


def watch_server_logger(protocol: object) -> None:
    """Put the filter on the logger of aiohttp's request handler ``protocol``, once.

    aiohttp's ``RequestHandler.logger`` (``aiohttp.server`` unless the server was given
    another) is the logger that writes the error line.
    """
    logger = getattr(protocol, "logger", None)
    if isinstance(logger, logging.Logger) and _FILTER not in logger.filters:
        # First, so that the logger's other filters run once, on the record handed on.
        logger.filters.insert(0, _FILTER)
        _filtered.add(logger)


def remove_error_line_filters() -> None:
    """Take the filter off every logger it was put on."""
    for logger in list(_filtered):
        logger.removeFilter(_FILTER)
    _filtered.clear()
