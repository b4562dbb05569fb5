"""The SERVER span of a request: find the one already running, or describe a new one."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import HttpVersion10, HttpVersion11, web
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


# A plain ``host[:port]`` authority: what nearly every request's Host header holds.
_PLAIN_AUTHORITY = re.compile(r"([A-Za-z0-9._-]+)(?::([0-9]{0,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PROTOCOL_VERSIONS = {HttpVersion10: "1.0", HttpVersion11: "1.1"}


def _server_address(request: web.BaseRequest, scheme: str) -> tuple[str | None, int | None]:
    """Return the host and port the request was addressed to, as ``request.url`` has them.

    A plain authority is split here; anything else (IPv6, IDNA, userinfo, odd ports)
    goes through ``request.url``, whose yarl URL costs several µs per request.
    """
    match = _PLAIN_AUTHORITY.fullmatch(request.host)
    if match is not None and scheme in _DEFAULT_PORTS:
        host, port = match.groups()
        if "xn--" not in host.lower() and (not port or int(port) <= 65535):
            return host.lower(), int(port) if port else _DEFAULT_PORTS[scheme]
    url = request.url
    return url.host, url.port


def request_attributes(request: web.BaseRequest, route: str) -> dict[str, Any]:
    """Return HTTP semantic-convention attributes known when the request starts."""
    scheme = request.scheme
    host, port = _server_address(request, scheme)
    version = request.version
    attributes: dict[str, Any] = {
        "http.request.method": request.method,
        "url.scheme": scheme,
        "url.path": request.path,
        "network.protocol.version": _PROTOCOL_VERSIONS.get(version)
        or f"{version.major}.{version.minor}",
    }
    if route:
        attributes["http.route"] = route
    if host:
        attributes["server.address"] = host
    if port:
        attributes["server.port"] = port
    if request.remote:
        attributes["client.address"] = request.remote
    user_agent = request.headers.get("User-Agent")
    if user_agent:
        attributes["user_agent.original"] = user_agent
    return attributes
