"""Loopback stand-ins for what the real Jaeger in the tests cannot be made to do.

The tests run a real Jaeger v2 (see ``tests.tools.jaeger_server``). Three things it will
not do on request, so they are played here:

- answer with a server error (``failing_jaeger``: a 500 with Jaeger's error body, the
  shape Go's ``http.Error`` writes);
- hang (``hanging_jaeger``: accepts the request, never answers);
- be an older Jaeger (``OlderJaeger``): a proxy in front of the real one that hides the
  api_v3 routes (Jaeger 1.x: Go's router 404 page, or the UI's HTML page for unknown
  paths), or the UI's ``/api/...`` routes (a Jaeger serving api_v3 alone). Everything
  it does pass on is answered by the real Jaeger. It also records what was asked, so a
  test can tell which API the lookup used, and counts the bytes of every answer as they
  cross the wire (compressed, when Jaeger compresses), so a test can tell what a lookup
  transferred.
"""

from __future__ import annotations

import asyncio
import enum
import json
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

__all__ = ["OLDER_JAEGER", "JaegerMode", "OlderJaeger", "failing_jaeger", "hanging_jaeger"]

# Jaeger's UI, served for every path the router does not know (Jaeger 1.x static handler).
_NOT_FOUND_PAGE = "404 page not found\n"
_UI_PAGE = "<!doctype html><html><head><title>Jaeger UI</title></head><body></body></html>"


class JaegerMode(enum.Enum):
    """Which Jaeger the proxy plays."""

    #: The real Jaeger as it is; the proxy only records the requests.
    CURRENT = "current"
    #: api_v3 alone, without the UI's `/api/...` routes (Go's router 404 page for them).
    V3_ONLY = "v3-only"
    #: No api_v3 route: Go's router answers `404 page not found`.
    V1_ONLY = "v1-only"
    #: No api_v3 route, and the UI's HTML page answers unknown paths with 200.
    V1_ONLY_UI_FALLBACK = "v1-only-ui-fallback"


@dataclass
class OlderJaeger:
    """What the proxy forwards to and how, and the requests it received."""

    upstream: str
    mode: JaegerMode = JaegerMode.CURRENT
    #: Where the proxy itself listens, once it is served.
    url: str = ""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: Body bytes of each answer, in the order of ``requests``.
    sizes: list[int] = field(default_factory=list)

    @property
    def transferred(self) -> int:
        """Body bytes of every answer so far."""
        return sum(self.sizes)

    def app(self) -> web.Application:
        """The proxy as an aiohttp application."""
        app = web.Application()
        app[OLDER_JAEGER] = self
        app.router.add_get("/{tail:.*}", _forward)
        return app


OLDER_JAEGER = web.AppKey("older_jaeger", OlderJaeger)


async def _forward(request: web.Request) -> web.Response:
    proxy = request.app[OLDER_JAEGER]
    query = dict(request.query)
    proxy.requests.append((request.path, query))
    if request.path.startswith("/api/v3/"):
        if proxy.mode is JaegerMode.V1_ONLY:
            proxy.sizes.append(len(_NOT_FOUND_PAGE))
            return web.Response(status=404, text=_NOT_FOUND_PAGE, content_type="text/plain")
        if proxy.mode is JaegerMode.V1_ONLY_UI_FALLBACK:
            proxy.sizes.append(len(_UI_PAGE))
            return web.Response(text=_UI_PAGE, content_type="text/html")
    elif request.path.startswith("/api/") and proxy.mode is JaegerMode.V3_ONLY:
        proxy.sizes.append(len(_NOT_FOUND_PAGE))
        return web.Response(status=404, text=_NOT_FOUND_PAGE, content_type="text/plain")
    # The client's Accept-Encoding goes on and the body comes back as sent, so the count
    # is of the bytes on the wire.
    encoding = {"Accept-Encoding": request.headers.get("Accept-Encoding", "identity")}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(proxy.upstream + request.path, params=query, headers=encoding) as answer,
    ):
        body = await answer.read()
        proxy.sizes.append(len(body))
        response = web.Response(status=answer.status, body=body)
        for name in ("Content-Type", "Content-Encoding"):
            if name in answer.headers:
                response.headers[name] = answer.headers[name]
        return response


def failing_jaeger(message: str) -> web.Application:
    """A Jaeger whose storage fails: every api_v3 search is a 500 carrying `message`."""
    body = json.dumps({"error": {"httpCode": 500, "message": message}})

    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=500, text=body)

    app = web.Application()
    app.router.add_get("/api/v3/traces", fail)
    return app


def hanging_jaeger() -> web.Application:
    """A Jaeger that takes the request and never answers it."""

    async def stall(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    app = web.Application()
    app.router.add_get("/api/v3/traces/{trace_id}", stall)
    return app
