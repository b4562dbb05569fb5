"""OpenTelemetry's aiohttp-server middleware: finding it, and the span it made for a request."""

from __future__ import annotations

import weakref

from aiohttp import web
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind

__all__ = ["is_otel_server_middleware", "is_server_span_of_request"]

_OTEL_AIOHTTP_SERVER = "opentelemetry.instrumentation.aiohttp_server"


def is_otel_server_middleware(middleware: object) -> bool:
    """Tell whether ``middleware`` is OpenTelemetry's aiohttp-server one (or wraps it).

    functools.wraps keeps the module name, so a wrapped one is found too.
    """
    return getattr(middleware, "__module__", None) == _OTEL_AIOHTTP_SERVER


def is_server_span_of_request(span: Span, request: web.BaseRequest) -> bool:
    """Tell whether ``span``, current when the middleware starts, is this request's span.

    Inside a server nothing but an outer tracing middleware (OpenTelemetry's
    aiohttp-server instrumentation) makes a span current before ours runs. A recording
    span tells its kind. A span that records nothing (unsampled, or no SDK) cannot: it is
    taken for the request's only where such a middleware runs for the request, because a
    span that was current when the server started is current in every request too. A
    remote span is only the caller's context that an API-only tracer hands back.
    """
    context = span.get_span_context()
    if not context.is_valid or context.is_remote:
        return False
    if isinstance(span, NonRecordingSpan):
        return _traced_by_otel(request)
    return getattr(span, "kind", None) is SpanKind.SERVER


# Per application: whether OpenTelemetry's aiohttp-server middleware is on it. An
# application is frozen while it serves, so the answer holds while it lives.
_otel_apps: weakref.WeakKeyDictionary[web.Application, bool] = weakref.WeakKeyDictionary()


def _traced_by_otel(request: web.BaseRequest) -> bool:
    """Tell whether OpenTelemetry's aiohttp-server middleware runs for this request."""
    match_info = getattr(request, "match_info", None)
    for app in getattr(match_info, "apps", ()):
        found = _otel_apps.get(app)
        if found is None:
            found = _otel_apps[app] = any(map(is_otel_server_middleware, app.middlewares))
        if found:
            return True
    return False
