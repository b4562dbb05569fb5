"""Which requests get no span: ``excluded_urls``, and OpenTelemetry's excluded-URL variables.

Two lists with two meanings. This library's own ``excluded_urls`` (the option, or
``OTEL_REQID_EXCLUDED_URLS``) leaves a request alone entirely: no span, no ids, no
headers, and no access line; such a request carries a mark the access logger reads.
``OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS`` / ``OTEL_PYTHON_EXCLUDED_URLS`` mean to this
library what they mean to every OpenTelemetry instrumentation: no span (and so no ids and
no headers), and nothing else; aiohttp still writes the access line, without ids. They
are searched in the request path alone, as OpenTelemetry's aiohttp-server
instrumentation searches them: beside it, a request has its span exactly when it has ids.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ._context import EXCLUDED_KEY
from ._options import Options

__all__ = ["is_excluded", "request_exclusion"]

_RequestTest = Callable[[web.BaseRequest], bool]


def _request_matcher(search: Callable[[str], bool], patterns: tuple[str, ...]) -> _RequestTest:
    """Return a test searching the request path, then the full URL.

    Both shapes OpenTelemetry's instrumentations use work: ``^/health``
    (aiohttp-server searches the path) and ``^https?://internal/`` (others search the
    full URL).
    """
    # `^/...` can never match a URL that starts with its scheme: building the full URL
    # (docs/options.md says what it costs) is skipped when every pattern is of that kind.
    path_only = all(pattern.startswith("^/") for pattern in patterns)

    def matches(request: web.BaseRequest) -> bool:
        if search(request.path):
            return True
        if path_only:
            return False
        try:
            url = str(request.url)
        except ValueError:
            # A Host header yarl refuses: there is no full URL, the path has spoken.
            return False
        return search(url)

    return matches


def _path_matcher(search: Callable[[str], bool]) -> _RequestTest:
    """Return a test searching the request path only (``request.url.path``, as
    OpenTelemetry's aiohttp-server instrumentation searches its excluded URLs)."""

    def matches(request: web.BaseRequest) -> bool:
        return search(request.path)

    return matches


def request_exclusion(options: Options) -> _RequestTest | None:
    """Return the test of whether a request gets no span; None when none is excluded.

    A request ``options.excluded_urls`` matches is marked (no access line either); one
    only OpenTelemetry's variables match is not.
    """
    own = options.url_excluded
    otel = options.url_untraced
    own_matches = None if own is None else _request_matcher(own, tuple(options.excluded_urls))
    otel_matches = None if otel is None else _path_matcher(otel)
    if own_matches is None and otel_matches is None:
        return None

    def excludes(request: web.BaseRequest) -> bool:
        if own_matches is not None and own_matches(request):
            request[EXCLUDED_KEY] = True
            return True
        return otel_matches is not None and otel_matches(request)

    return excludes


def is_excluded(request: web.BaseRequest) -> bool:
    """Tell whether ``excluded_urls`` left this request alone (no span, no access line)."""
    return EXCLUDED_KEY in request
