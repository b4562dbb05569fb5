"""Which requests the library leaves alone (``excluded_urls``), and the mark they carry."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ._context import EXCLUDED_KEY
from ._options import Options

__all__ = ["is_excluded", "request_exclusion"]


def request_exclusion(options: Options) -> Callable[[web.BaseRequest], bool] | None:
    """Return the test of ``options.excluded_urls`` that marks a request it matches.

    None when nothing is excluded. A pattern is searched in the path and then in the
    full URL, so that both shapes OpenTelemetry's instrumentations use work:
    ``^/health`` (aiohttp-server searches the path) and ``^https?://internal/`` (others
    search the full URL).
    """
    url_excluded = options.url_excluded
    if url_excluded is None:
        return None
    # `^/...` can never match a URL that starts with its scheme: building the full URL
    # (about a microsecond) is skipped when every pattern is of that kind.
    path_only = all(pattern.startswith("^/") for pattern in options.excluded_urls)

    def excludes(request: web.BaseRequest) -> bool:
        if EXCLUDED_KEY in request:
            return True
        if not url_excluded(request.path):
            if path_only:
                return False
            try:
                url = str(request.url)
            except ValueError:
                # A Host header yarl refuses: there is no full URL, the path has spoken.
                return False
            if not url_excluded(url):
                return False
        request[EXCLUDED_KEY] = True
        return True

    return excludes


def is_excluded(request: web.BaseRequest) -> bool:
    """Tell whether ``excluded_urls`` left this request alone (no span, no access line)."""
    return EXCLUDED_KEY in request
