"""An aiohttp app that knows nothing of otel-reqid-logging.

Run it under ``opentelemetry-instrument`` (see the README) and its log lines, aiohttp's
access line included, carry request ids and trace ids; its spans go where the
``OTEL_*`` variables say.
"""

import asyncio
import logging
import os

from aiohttp import web

log = logging.getLogger("shop")


async def checkout(request: web.Request) -> web.Response:
    """Log a little, wait a little, answer."""
    log.info("checking out cart %s", request.match_info["cart"])
    await asyncio.sleep(0.01)
    log.info("cart %s paid", request.match_info["cart"])
    return web.json_response({"ok": True})


async def crash(request: web.Request) -> web.Response:
    """Fail, to show what an unhandled exception looks like in the logs."""
    raise RuntimeError("payment service unreachable")


def main() -> None:
    """Serve on PORT (default 8080)."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s [req:%(request_id)s trace:%(trace_id)s] "
        "%(message)s",
    )
    app = web.Application()
    app.router.add_post("/checkout/{cart}", checkout)
    app.router.add_get("/crash", crash)
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))


if __name__ == "__main__":
    main()
