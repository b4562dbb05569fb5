"""The app gunicorn serves in the tests: plain aiohttp that knows nothing of the library.

``gunicorn tests.gunicorn_app:app``. Its log lines go to stderr in a format naming the
ids, the way an app run under ``opentelemetry-instrument`` sets up logging; under a
gunicorn ``logconfig_dict`` the root logger has handlers already and this changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiohttp import web

log = logging.getLogger("shop")
logging.basicConfig(
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s [req:%(request_id)s trace:%(trace_id)s] %(message)s",
)


async def checkout(request: web.Request) -> web.Response:
    """Log a line, wait a little, log another, answer with the worker's pid."""
    log.info("checking out cart %s", request.match_info["cart"])
    await asyncio.sleep(float(request.query.get("hold", "0.01")))
    log.info("cart %s paid", request.match_info["cart"])
    return web.json_response({"pid": os.getpid()})


app = web.Application()
app.router.add_post("/checkout/{cart}", checkout)
