"""Run inside a virtual environment that holds only the plain install (no extras).

Serves one app wired with the middleware and access logger, and one wired by the
instrumentor, on loopback; sends a request to each; prints what it saw as one JSON
object for ``tests/test_floors.py`` to check.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging

from aiohttp import ClientSession, web

import otel_reqid_logging
from otel_reqid_logging import (
    LOG_FORMAT,
    RequestIdAccessLogger,
    RequestIdInstrumentor,
    RequestIdMiddleware,
    install_record_factory,
)

__all__ = ["main"]

log = logging.getLogger("shop")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def _hello(request: web.Request) -> web.Response:
    log.info("saying hello")
    return web.Response(text="hello")


async def _serve_once(app: web.Application, **server: object) -> str:
    """Serve ``app`` on a free loopback port, GET /, return the X-Request-ID header."""
    app.router.add_get("/", _hello)
    runner = web.AppRunner(app, **server)  # type: ignore[arg-type]
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as got:
            await got.read()
            return got.headers.get("X-Request-ID", "")
    finally:
        await runner.cleanup()


async def _both() -> dict[str, str]:
    plain = web.Application(middlewares=[RequestIdMiddleware()])
    headers = {"middleware": await _serve_once(plain, access_log_class=RequestIdAccessLogger)}
    instrumented = web.Application()
    RequestIdInstrumentor().instrument_app(instrumented)
    headers["instrumentor"] = await _serve_once(instrumented)
    return headers


def main() -> None:
    """Print the SDK's absence, the headers, and every log line, as JSON."""
    lines = _Lines()
    root = logging.getLogger()
    root.addHandler(lines)
    root.setLevel(logging.INFO)
    install_record_factory()
    headers = asyncio.run(_both())
    report = {
        "package": otel_reqid_logging.__file__,
        "sdk_importable": importlib.util.find_spec("opentelemetry.sdk") is not None,
        "headers": headers,
        "lines": lines.lines,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
