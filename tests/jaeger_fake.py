"""Loopback stand-ins for what the real Jaeger in the tests cannot be made to do.

The tests run a real Jaeger v2 (see ``tests.tools.jaeger_server``). Three things it will
not do on request, so they are played here:

- answer with a server error (``failing_jaeger``: a 500 with Jaeger's error body, the
  shape Go's ``http.Error`` writes);
- hang (``hanging_jaeger``: accepts the request, never answers);
- be an older Jaeger (``OlderJaeger``): a proxy in front of the real one that hides the
  api_v3 routes (Jaeger 1.x: Go's router 404 page, or the UI's HTML page for unknown
  paths) or drops ``query.attributes`` (releases whose api_v3 ignored it). Everything
  it does pass on is answered by the real Jaeger. It also records what was asked, so a
  test can tell which API the lookup used.
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
_UI_PAGE = "<!doctype html><html><head><title>Jaeger UI</title></head><body></body></html>"


class JaegerMode(enum.Enum):
    """Which Jaeger the proxy plays."""

    #: The real Jaeger as it is; the proxy only records the requests.
    CURRENT = "current"
    #: A release whose api_v3 ignores `query.attributes` (returns every trace of the service).
    V3_WITHOUT_ATTRIBUTES = "v3-without-attributes"
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
            return web.Response(status=404, text="404 page not found\n", content_type="text/plain")
        if proxy.mode is JaegerMode.V1_ONLY_UI_FALLBACK:
            return web.Response(text=_UI_PAGE, content_type="text/html")
        if proxy.mode is JaegerMode.V3_WITHOUT_ATTRIBUTES:
            query.pop("query.attributes", None)
    async with (
        aiohttp.ClientSession() as session,
        session.get(proxy.upstream + request.path, params=query) as answer,
    ):
        return web.Response(
            status=answer.status,
            body=await answer.read(),
            content_type=answer.content_type,
            charset=answer.charset,
        )


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
