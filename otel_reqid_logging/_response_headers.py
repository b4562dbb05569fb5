"""The headers the middleware adds to a response: the request id, ``traceresponse``, CORS.

``traceresponse`` is W3C Trace Context Level 2's response header,
``00-<trace id>-<span id>-<flags>`` of the request's SERVER span. A browser reads
cross-origin response headers only when ``Access-Control-Expose-Headers`` names them,
so on a CORS response (one carrying ``Access-Control-Allow-Origin``) ours are added to
that list.
"""

from __future__ import annotations

from multidict import CIMultiDict

from ._context import RequestIds

__all__ = ["TRACERESPONSE_HEADER", "ResponseHeaders", "traceresponse_value"]

TRACERESPONSE_HEADER = "traceresponse"
_ALLOW_ORIGIN = "Access-Control-Allow-Origin"
_EXPOSE = "Access-Control-Expose-Headers"


def traceresponse_value(ids: RequestIds) -> str:
    """The ``traceresponse`` value for a request's ids: version 00 and the span's flags."""
    return f"00-{ids.trace_id}-{ids.span_id}-{ids.trace_flags:02x}"


class ResponseHeaders:
    """Writes the configured headers onto a response's headers that can still change."""

    __slots__ = ("_exposed", "_request_id_header", "_traceresponse")

    def __init__(self, *, request_id_header: str | None, traceresponse: bool) -> None:
        """Configure which headers to write (``request_id_header`` None writes none)."""
        self._request_id_header = request_id_header
        self._traceresponse = traceresponse
        exposed = [request_id_header] if request_id_header else []
        if traceresponse:
            exposed.append(TRACERESPONSE_HEADER)
        self._exposed = tuple(exposed)

    def write(self, headers: CIMultiDict[str], ids: RequestIds) -> None:
        """Add the headers; a value the handler set itself is kept."""
        name = self._request_id_header
        if name is not None:
            headers.setdefault(name, ids.request_id)
        if self._traceresponse:
            headers.setdefault(TRACERESPONSE_HEADER, traceresponse_value(ids))
        if self._exposed and _ALLOW_ORIGIN in headers:
            _expose(headers, self._exposed)


def _expose(headers: CIMultiDict[str], names: tuple[str, ...]) -> None:
    """Merge ``names`` into Access-Control-Expose-Headers, each name once."""
    # The list may be spread over several header lines; they become one.
    listed = [item.strip() for line in headers.getall(_EXPOSE, ()) for item in line.split(",")]
    listed = [item for item in listed if item]
    known = {item.lower() for item in listed}
    missing = [name for name in names if name.lower() not in known]
    if missing:
        headers[_EXPOSE] = ", ".join([*listed, *missing])
