"""Run inside a virtual environment with sentry-sdk 1.x, for ``tests/test_sentry.py``.

sentry-sdk 1.x has no ``get_client`` nor isolation scopes, only Hubs. Serves an app with
the middleware on loopback, Sentry initialized and a transport that keeps events; sends
concurrent requests whose handlers fail, then one event outside any request; prints the
statuses, the request id headers and the events' tags as one JSON object. The arguments:
``aiohttp`` turns 1.x's aiohttp integration on; ``no-locals`` passes
``include_local_variables=False`` (see ``docs/sentry.md``: on Python 3.13, 1.x loses the
events of exceptions unless it is given that).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import sentry_sdk
from aiohttp import ClientSession, web
from sentry_sdk.integrations.aiohttp import AioHttpIntegration
from sentry_sdk.integrations.logging import LoggingIntegration

from otel_reqid_logging import RequestIdMiddleware

__all__ = ["main"]

REQUESTS = 10


async def fail(request: web.Request) -> web.Response:
    """Tag the event with the request's own number, then fail."""
    sentry_sdk.set_tag("n", request.query["n"])
    await asyncio.sleep(0.01)
    raise RuntimeError(f"failing request {request.query['n']}")


async def serve_and_call() -> dict[str, Any]:
    """Serve the app, send the requests at once, return statuses and request ids by n."""
    middleware = RequestIdMiddleware()
    app = web.Application(middlewares=[middleware])
    # The header on the 500 aiohttp answers the failing handler with.
    app.on_response_prepare.append(middleware.on_response_prepare)
    app.router.add_get("/", fail)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        async with ClientSession() as session:

            async def one(n: int) -> tuple[str, int, str]:
                async with session.get(url, params={"n": str(n)}) as response:
                    return str(n), response.status, response.headers.get("X-Request-ID", "")

            answers = await asyncio.gather(*(one(n) for n in range(REQUESTS)))
    finally:
        await runner.cleanup()
    return {n: {"status": status, "request_id": rid} for n, status, rid in answers}


def main() -> None:
    """Print what the requests got and what Sentry captured."""
    events: list[dict[str, Any]] = []

    def keep(event: Any) -> None:
        # sentry-sdk 1.x takes a plain function as its transport.
        events.append(event)

    integrations: list[Any] = [LoggingIntegration(event_level=logging.ERROR)]
    if "aiohttp" in sys.argv[1:]:
        integrations.append(AioHttpIntegration())
    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        transport=keep,
        default_integrations=False,
        integrations=integrations,
        include_local_variables="no-locals" not in sys.argv[1:],
    )
    answers = asyncio.run(serve_and_call())
    sentry_sdk.capture_message("outside any request")
    sentry_sdk.flush()
    print(
        json.dumps(
            {
                "sentry": sentry_sdk.VERSION,
                "answers": answers,
                "tags": [event.get("tags", {}) for event in events],
            }
        )
    )


if __name__ == "__main__":
    main()
