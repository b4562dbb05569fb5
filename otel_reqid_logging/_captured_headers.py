"""Request and response headers captured as span attributes, as OpenTelemetry captures them.

``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`` and ``..._SERVER_RESPONSE``
list header names (regexes, matched whole and in any case) whose values become
``http.request.header.<name>`` / ``http.response.header.<name>`` attributes (the name in
lower case, ``-`` as ``_``; the value a one-item list). A header whose name matches a
regex of ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS`` (searched, in any
case) is recorded as ``[REDACTED]``. The variables are read when the middleware is set up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

__all__ = [
    "REQUEST_ENV",
    "RESPONSE_ENV",
    "SANITIZE_ENV",
    "HeaderCapture",
    "header_capture",
]

REQUEST_ENV = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST"
RESPONSE_ENV = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE"
SANITIZE_ENV = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"


def _names(environ: Mapping[str, str], variable: str) -> re.Pattern[str] | None:
    """Return the variable's comma-separated regexes as one, or None when it is unset."""
    value = environ.get(variable)
    if not value:
        return None
    return re.compile("|".join(part.strip() for part in value.split(",")), re.IGNORECASE)


class _Capture:
    """One direction's capture: which headers, under which attribute prefix."""

    __slots__ = ("_prefix", "_sanitize", "_wanted")

    def __init__(
        self, wanted: re.Pattern[str], sanitize: re.Pattern[str] | None, prefix: str
    ) -> None:
        self._wanted = wanted
        self._sanitize = sanitize
        self._prefix = prefix

    def attributes(self, headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
        """Return the attributes of the matching headers (a repeated header: its last value)."""
        found: dict[str, list[str]] = {}
        wanted, sanitize = self._wanted, self._sanitize
        for name, value in headers:
            if wanted.fullmatch(name):
                key = self._prefix + name.lower().replace("-", "_")
                redacted = sanitize is not None and sanitize.search(name)
                found[key] = ["[REDACTED]" if redacted else value]
        return found


class HeaderCapture:
    """The headers to capture on requests and on responses (None: none)."""

    __slots__ = ("request", "response")

    def __init__(self, request: _Capture | None, response: _Capture | None) -> None:
        self.request = request
        self.response = response


_NOTHING = HeaderCapture(None, None)


def header_capture(environ: Mapping[str, str] | None = None) -> HeaderCapture:
    """Read the three variables (default ``os.environ``)."""
    env = os.environ if environ is None else environ
    request, response = _names(env, REQUEST_ENV), _names(env, RESPONSE_ENV)
    if request is None and response is None:
        return _NOTHING
    sanitize = _names(env, SANITIZE_ENV)
    return HeaderCapture(
        None if request is None else _Capture(request, sanitize, "http.request.header."),
        None if response is None else _Capture(response, sanitize, "http.response.header."),
    )
