"""The HTTP semantic conventions of the SERVER span and its metrics, in each opt-in mode.

OpenTelemetry's instrumentations record the old HTTP conventions by default, the stable
ones with ``OTEL_SEMCONV_STABILITY_OPT_IN=http`` and both with ``http/dup``. This module
is the one place that knows what each mode writes: the span's attributes when it starts
and when the status is known, the schema URL, and which attributes each metric point
keeps. The span and metrics code asks it and never names an attribute itself.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from typing import Any

from aiohttp import HttpVersion10, HttpVersion11, web

from ._address import server_address

__all__ = [
    "OPT_IN_ENV",
    "SCHEMA_NEW",
    "SCHEMA_OLD",
    "Conventions",
    "Mode",
    "conventions_for",
    "opt_in_mode",
    "route_of",
    "span_name",
]

OPT_IN_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"


class Mode(enum.Enum):
    """An HTTP semantic-convention mode, named by its ``OTEL_SEMCONV_STABILITY_OPT_IN`` value."""

    OLD = "default"
    STABLE = "http"
    DUP = "http/dup"


def _mode_of(value: str | None) -> Mode:
    """Read the opt-in variable as OpenTelemetry's ``_semconv`` does: ``http/dup`` wins."""
    if not value:
        return Mode.OLD
    names = [name.strip() for name in value.split(",")]
    if Mode.DUP.value in names:
        return Mode.DUP
    return Mode.STABLE if Mode.STABLE.value in names else Mode.OLD


def opt_in_mode(environ: Mapping[str, str] | None = None) -> Mode:
    """Return the mode OpenTelemetry's HTTP instrumentations are in (default ``os.environ``).

    OpenTelemetry reads the variable once per process, at its first instrumentation, and
    keeps the answer; asking its own record keeps both libraries in the same mode even
    when the variable changed since. Its record is private, so without it (another
    version) the variable is read here by the same rules.
    """
    if environ is None:
        try:
            from opentelemetry.instrumentation._semconv import (  # noqa: PLC0415
                _OpenTelemetrySemanticConventionStability,
                _OpenTelemetryStabilitySignalType,
            )

            stability: Any = _OpenTelemetrySemanticConventionStability
            stability._initialize()
            found = stability._get_opentelemetry_stability_opt_in_mode(
                _OpenTelemetryStabilitySignalType.HTTP
            )
            return Mode(found.value)
        except (ImportError, AttributeError, ValueError):
            environ = os.environ
    return _mode_of(environ.get(OPT_IN_ENV))


def route_of(request: web.BaseRequest) -> str:
    """Return the matched route template (``/users/{id}``), or "" when none matched."""
    match_info = getattr(request, "match_info", None)
    resource = None if match_info is None else match_info.route.resource
    return "" if resource is None else resource.canonical


# The methods the semantic conventions know; any other is recorded as "_OTHER".
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"}
)


def _known_method(method: str) -> str:
    """Return the method in capitals, or "_OTHER" for one the conventions do not know.

    An unbounded set of client-chosen methods would make unbounded metric series.
    """
    if method in _KNOWN_METHODS:
        return method
    upper = method.upper()
    return upper if upper in _KNOWN_METHODS else "_OTHER"


def span_name(method: str, route: str) -> str:
    """Return the span name: ``METHOD route``, or only the method for unmatched paths.

    ``method`` is the known method or "_OTHER", which is named ``HTTP``.
    """
    if method == "_OTHER":
        method = "HTTP"
    return f"{method} {route}" if route else method


_PROTOCOL_VERSIONS = {HttpVersion10: "1.0", HttpVersion11: "1.1"}

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


# The attributes each metric point keeps, per convention (OpenTelemetry's lists).
_OLD_DURATION = (
    "http.method",
    "http.host",
    "http.scheme",
    "http.status_code",
    "http.flavor",
    "http.server_name",
    "net.host.name",
    "net.host.port",
)
_NEW_DURATION = (
    "error.type",
    "http.request.method",
    "http.response.status_code",
    "http.route",
    "network.protocol.version",
    "url.scheme",
)
_OLD_ACTIVE = ("http.method", "http.host", "http.scheme", "http.flavor", "http.server_name")
_NEW_ACTIVE = ("http.request.method", "url.scheme")

#: The schemas OpenTelemetry's instrumentations announce for the old and stable conventions.
SCHEMA_OLD = "https://opentelemetry.io/schemas/1.11.0"
SCHEMA_NEW = "https://opentelemetry.io/schemas/1.21.0"


class Conventions:
    """What one mode writes on the span and keeps on each metric point."""

    __slots__ = (
        "active_names",
        "mode",
        "new",
        "new_duration_names",
        "old",
        "old_duration_names",
        "schema_url",
    )

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        #: Whether the old attributes are written, and the stable ones.
        self.old = mode is not Mode.STABLE
        self.new = mode is not Mode.OLD
        #: The schema URL of the span's scope and of the stable metrics' meter.
        self.schema_url = SCHEMA_NEW if self.new else SCHEMA_OLD
        #: The attributes of ``http.server.duration`` (old) and of
        #: ``http.server.request.duration`` (stable); () where the mode records none.
        self.old_duration_names = _OLD_DURATION if self.old else ()
        self.new_duration_names = _NEW_DURATION if self.new else ()
        #: The attributes of ``http.server.active_requests`` (both lists in ``http/dup``).
        self.active_names = (_OLD_ACTIVE if self.old else ()) + (_NEW_ACTIVE if self.new else ())

    # One pass over the request for both conventions: it runs on every request.
    def request_attributes(  # noqa: PLR0912
        self, request: web.BaseRequest, method: str, route: str
    ) -> dict[str, Any]:
        """Return the attributes known when the request starts; ``method`` as ``_known_method``.

        They are also what the metric points are filtered from, as OpenTelemetry does.
        """
        scheme = request.scheme
        host, port, origin = server_address(request, scheme)
        version = request.version
        protocol = _PROTOCOL_VERSIONS.get(version) or f"{version.major}.{version.minor}"
        user_agent = request.headers.get("User-Agent")
        attributes: dict[str, Any] = {}
        if self.new:
            attributes["http.request.method"] = method
            if method != request.method:
                attributes["http.request.method_original"] = request.method
            attributes["url.scheme"] = scheme
            if host:
                attributes["server.address"] = host
            if port:
                attributes["server.port"] = port
            attributes["url.path"] = request.path
            if "?" in request.raw_path:
                query = request.path_qs.partition("?")[2]
                if query:
                    attributes["url.query"] = _redacted_query(query)
            if user_agent:
                attributes["user_agent.original"] = user_agent
            attributes["network.protocol.version"] = protocol
        if self.old:
            attributes["http.method"] = method
            attributes["http.scheme"] = scheme
            if host:
                attributes["net.host.name"] = host
                attributes["http.host"] = host
            if port:
                attributes["net.host.port"] = port
            target = request.path_qs
            path, question, query = target.partition("?")
            if question:
                target = f"{path}?{_redacted_query(query)}"
            attributes["http.target"] = target
            # yarl would resolve "." segments and read "//host" as an authority.
            if origin is None or target.startswith("//") or "/." in path:
                attributes["http.url"] = _full_url(request)
            else:
                attributes["http.url"] = f"{origin}{target}"
            if user_agent:
                attributes["http.user_agent"] = user_agent
            attributes["http.flavor"] = protocol
            authority = request.host
            if authority:
                attributes["http.server_name"] = authority
        if route:
            attributes["http.route"] = route
        return attributes

    def status_attributes(self, status: int, attributes: dict[str, Any]) -> bool:
        """Add the attributes of a response status to ``attributes``; tell whether it failed.

        A server span fails on a 5xx (and on a status below 100); a 4xx is the client's.
        """
        failed = status >= 500 or status < 100
        if self.old:
            attributes["http.status_code"] = status
        if self.new:
            attributes["http.response.status_code"] = status
            if failed:
                attributes["error.type"] = str(status)
        return failed

    def exception_attributes(self, exception: BaseException, attributes: dict[str, Any]) -> str:
        """Add the attributes of an exception that left the handler; return the status text.

        There is no status code to record: aiohttp answers for it. The stable conventions
        name its class in ``error.type``; the text is OpenTelemetry's status description.
        """
        name = type(exception).__qualname__
        if self.new:
            attributes["error.type"] = name
        return f"Non-integer HTTP status: {name}"

    def cancelled_attributes(self, attributes: dict[str, Any]) -> None:
        """Add the attributes of a request cancelled before it was answered.

        OpenTelemetry's span says nothing then; ours says ``error.type`` = ``cancelled``
        in every mode, worth seeing in a trace.
        """
        attributes["error.type"] = "cancelled"


def _full_url(request: web.BaseRequest) -> str:
    """Return ``http.url`` the slow way: yarl's URL of the request, its signature redacted."""
    try:
        url = str(request.url)
    except ValueError:
        return request.path_qs
    base, question, query = url.partition("?")
    return f"{base}?{_redacted_query(query)}" if question else url


_by_mode = {mode: Conventions(mode) for mode in Mode}


def conventions_for(mode: Mode) -> Conventions:
    """Return the (shared) conventions of ``mode``."""
    return _by_mode[mode]
