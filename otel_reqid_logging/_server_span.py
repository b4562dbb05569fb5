"""The SERVER span of a request: find the one already running, or describe a new one."""

from __future__ import annotations

import re
import weakref
from typing import Any

from aiohttp import HttpVersion10, HttpVersion11, web
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagate import extract, get_global_textmap
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._incoming import acceptable_baggage, acceptable_tracestate
from ._metrics import Measurement, ServerMetrics

__all__ = [
    "HEADERS_GETTER",
    "NOTHING_INCOMING",
    "OwnSpan",
    "http_method",
    "incoming_context",
    "is_otel_server_middleware",
    "is_server_span_of_request",
    "protocol_version",
    "request_attributes",
    "route_of",
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

# What W3C trace-context extraction gives for a request without its headers: a context
# with nothing in it (the trace-context propagator starts from an empty one).
NOTHING_INCOMING = Context()


def _w3c_headers(propagator: TextMapPropagator) -> tuple[str, ...] | None:
    """Return the headers the propagator reads, if it is (made of) the W3C ones only.

    None for any other propagator: what it reads, and what it returns when its
    headers are missing, are its own business.
    """
    members = getattr(propagator, "_propagators", [propagator])
    if not members or type(members[0]) is not TraceContextTextMapPropagator:
        return None
    names: list[str] = []
    for member in members:
        if type(member) is TraceContextTextMapPropagator:
            names.append("traceparent")
        elif type(member) is W3CBaggagePropagator:
            names.append("baggage")
        else:
            return None
    return tuple(names)


class _IncomingContext:
    """Extracts the caller's context from a request, skipping the propagators when the
    request carries none of the W3C headers they would read (most requests)."""

    __slots__ = ("_headers", "_propagator")

    def __init__(self) -> None:
        self._propagator: TextMapPropagator | None = None
        self._headers: tuple[str, ...] | None = None

    def __call__(self, request: web.BaseRequest) -> Context:
        propagator = get_global_textmap()
        if propagator is not self._propagator:
            self._headers = _w3c_headers(propagator)
            self._propagator = propagator
        names = self._headers
        if names is not None:
            headers = request.headers
            for name in names:
                if name in headers:
                    break
            else:
                return NOTHING_INCOMING
        return extract(request, getter=HEADERS_GETTER)


incoming_context = _IncomingContext()


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


_OTEL_AIOHTTP_SERVER = "opentelemetry.instrumentation.aiohttp_server"


def is_otel_server_middleware(middleware: object) -> bool:
    """Tell whether ``middleware`` is OpenTelemetry's aiohttp-server one (or wraps it).

    functools.wraps keeps the module name, so a wrapped one is found too.
    """
    return getattr(middleware, "__module__", None) == _OTEL_AIOHTTP_SERVER


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


def route_of(request: web.BaseRequest) -> str:
    """Return the matched route template (``/users/{id}``), or "" when none matched."""
    match_info = getattr(request, "match_info", None)
    resource = None if match_info is None else match_info.route.resource
    return "" if resource is None else resource.canonical


# The methods the semantic conventions know; any other is recorded as "_OTHER".
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"}
)


def http_method(request: web.BaseRequest) -> str:
    """Return ``http.request.method``: the method in capitals, or "_OTHER" for unknown ones.

    An unbounded set of client-chosen methods would make unbounded metric series.
    """
    method = request.method
    if method in _KNOWN_METHODS:
        return method
    upper = method.upper()
    return upper if upper in _KNOWN_METHODS else "_OTHER"


def span_name(request: web.BaseRequest, route: str) -> str:
    """Return the span name: ``METHOD route``, or only the method for unmatched paths.

    An unknown method is named ``HTTP``, as the semantic conventions say.
    """
    method = http_method(request)
    if method == "_OTHER":
        method = "HTTP"
    return f"{method} {route}" if route else method


# A plain ``host[:port]`` authority: what nearly every request's Host header holds.
_PLAIN_AUTHORITY = re.compile(r"([A-Za-z0-9._-]+)(?::([0-9]{0,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PROTOCOL_VERSIONS = {HttpVersion10: "1.0", HttpVersion11: "1.1"}


# Host header and scheme -> the server address and port they name. Nearly every request
# of a server names the same few; bounded, since the Host header is the client's choice.
_addresses: dict[tuple[str, str], tuple[str | None, int | None]] = {}
_MAX_ADDRESSES = 64


def _server_address(request: web.BaseRequest, scheme: str) -> tuple[str | None, int | None]:
    """Return the host and port the request was addressed to, as ``request.url`` has them.

    A plain authority is split here; anything else (IPv6, IDNA, userinfo, odd ports)
    goes through ``request.url``, whose yarl URL costs several µs per request.
    """
    authority = request.host
    found = _addresses.get((authority, scheme))
    if found is not None:
        return found
    match = _PLAIN_AUTHORITY.fullmatch(authority)
    if match is not None and scheme in _DEFAULT_PORTS:
        host, port = match.groups()
        if "xn--" not in host.lower() and (not port or int(port) <= 65535):
            found = host.lower(), int(port) if port else _DEFAULT_PORTS[scheme]
            if len(_addresses) >= _MAX_ADDRESSES:
                _addresses.clear()
            _addresses[authority, scheme] = found
            return found
    try:
        url = request.url
    except ValueError:
        # A Host header yarl refuses (a port past 65535, a non-numeric one): the request
        # is still served, its span just has no server address.
        return None, None
    return url.host, url.port


def protocol_version(request: web.BaseRequest) -> str:
    """Return ``network.protocol.version``: "1.1", "1.0"."""
    version = request.version
    return _PROTOCOL_VERSIONS.get(version) or f"{version.major}.{version.minor}"


# Query parameters whose values the semantic conventions say to redact (signed URLs).
_REDACTED_PARAMETERS = frozenset({"AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"})


def _redacted_query(query: str) -> str:
    """Return the query string with the values of credential-like parameters replaced."""
    if not any(name in query for name in _REDACTED_PARAMETERS):
        return query
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        parts.append(f"{name}=REDACTED" if equals and name in _REDACTED_PARAMETERS else part)
    return "&".join(parts)


def request_attributes(request: web.BaseRequest, route: str) -> dict[str, Any]:
    """Return HTTP semantic-convention attributes known when the request starts."""
    scheme = request.scheme
    host, port = _server_address(request, scheme)
    method = http_method(request)
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.scheme": scheme,
        "url.path": request.path,
        "network.protocol.version": protocol_version(request),
    }
    if method != request.method:
        attributes["http.request.method_original"] = request.method
    if "?" in request.raw_path:
        query = request.path_qs.partition("?")[2]
        if query:
            attributes["url.query"] = _redacted_query(query)
    if route:
        attributes["http.route"] = route
    if host:
        attributes["server.address"] = host
    if port:
        attributes["server.port"] = port
    user_agent = request.headers.get("User-Agent")
    if user_agent:
        attributes["user_agent.original"] = user_agent
    return attributes


class OwnSpan:
    """The SERVER span this library started for a request, and the request's metrics.

    The middleware tells it how the request went (``responded``, ``failed``,
    ``cancelled``); ``end`` records the duration and ends the span.
    """

    __slots__ = ("_measurement", "_pending", "span")

    def __init__(
        self,
        span: Span,
        metrics: ServerMetrics | None,
        request: web.BaseRequest,
        request_id: str,
    ) -> None:
        """Keep ``span``; with ``metrics``, count the request as active from now on."""
        self.span = span
        # Attributes known during the request, set on the span in one call when it ends:
        # each set_attribute call costs the SDK a lock and a validation pass.
        self._pending: dict[str, Any] = {"request.id": request_id}
        self._measurement: Measurement | None = None
        if metrics is not None:
            self._measurement = metrics.start(
                http_method(request), request.scheme, route_of(request), protocol_version(request)
            )

    def responded(self, status: int, exception: BaseException | None = None) -> None:
        """Record the response status; a 5xx marks the span as failed.

        ``exception`` is the ``HTTPException`` that carried the status; a 5xx one is
        recorded on the span as an event.
        """
        pending = self._pending
        pending["http.response.status_code"] = status
        measurement = self._measurement
        if measurement is not None:
            measurement.status = status
        if status >= 500:
            pending["error.type"] = error_type = str(status)
            if measurement is not None:
                measurement.error_type = error_type
            span = self.span
            if span.is_recording():
                span.set_status(Status(StatusCode.ERROR))
                if exception is not None:
                    span.record_exception(exception)

    def failed(self, exception: BaseException) -> None:
        """Note that an unhandled exception became a 500 response (``error.type``: its class).

        The span's own error marks are the middleware's to set, for whichever span.
        """
        self.responded(500)
        self._pending["error.type"] = error_type = type(exception).__qualname__
        if self._measurement is not None:
            self._measurement.error_type = error_type

    def cancelled(self) -> None:
        """Note that the request was cancelled (the client went away)."""
        self._pending["error.type"] = "cancelled"

    def end(self) -> None:
        """Record the request's metrics (inside its span, for exemplars) and end the span."""
        span = self.span
        if span.is_recording():
            span.set_attributes(self._pending)
        if self._measurement is not None:
            self._measurement.end()
        span.end()
