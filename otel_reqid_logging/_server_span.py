"""The SERVER span of a request: find the one already running, or describe a new one."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind

from ._incoming import acceptable_baggage, acceptable_tracestate

__all__ = [
    "HEADERS_GETTER",
    "is_server_span_of_request",
    "request_attributes",
    "span_name",
]


_CHECKED = {"tracestate": acceptable_tracestate, "baggage": acceptable_baggage}


class _HeadersGetter(Getter[web.BaseRequest]):
    """Lets OpenTelemetry propagators read request headers, minus malformed ones.

    A ``tracestate`` or ``baggage`` header that does not parse is withheld, so that the
    propagators never log the client's text (see ``_incoming``).
    """

    def get(self, carrier: web.BaseRequest, key: str) -> list[str] | None:
        values = carrier.headers.getall(key, None)
        if not values:
            return None
        check = _CHECKED.get(key.lower())
        if check is not None and not all(check(value) for value in values):
            return None
        return list(values)

    def keys(self, carrier: web.BaseRequest) -> list[str]:
        return list(carrier.headers.keys())


HEADERS_GETTER = _HeadersGetter()


def is_server_span_of_request(span: Span) -> bool:
    """Tell whether ``span``, current when the middleware starts, is this request's span.

    Inside a server nothing but an outer tracing middleware (OpenTelemetry's
    aiohttp-server instrumentation) makes a span current before ours runs. A recording
    span tells its kind; a span that records nothing (unsampled, or no SDK) cannot, but a
    local one was still started for this request, while a remote one is only the
    caller's context that an API-only tracer hands back.
    """
    context = span.get_span_context()
    if not context.is_valid or context.is_remote:
        return False
    if isinstance(span, NonRecordingSpan):
        return True
    return getattr(span, "kind", None) is SpanKind.SERVER


def route_of(request: web.BaseRequest) -> str:
    """Return the matched route template (``/users/{id}``), or "" when none matched."""
    match_info = getattr(request, "match_info", None)
    resource = None if match_info is None else match_info.route.resource
    return "" if resource is None else resource.canonical


def span_name(request: web.BaseRequest, route: str) -> str:
    """Return the span name: ``METHOD route``, or only the method for unmatched paths."""
    return f"{request.method} {route}" if route else request.method


def request_attributes(request: web.BaseRequest, route: str) -> dict[str, Any]:
    """Return HTTP semantic-convention attributes known when the request starts."""
    url = request.url
    attributes: dict[str, Any] = {
        "http.request.method": request.method,
        "url.scheme": request.scheme,
        "url.path": request.path,
        "network.protocol.version": f"{request.version.major}.{request.version.minor}",
    }
    if route:
        attributes["http.route"] = route
    if url.host:
        attributes["server.address"] = url.host
    if url.port:
        attributes["server.port"] = url.port
    if request.remote:
        attributes["client.address"] = request.remote
    user_agent = request.headers.get("User-Agent")
    if user_agent:
        attributes["user_agent.original"] = user_agent
    return attributes
