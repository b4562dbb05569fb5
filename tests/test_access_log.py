"""RequestIdAccessLogger: the access line carries the ids of its request."""

from __future__ import annotations

import logging
import re

from aiohttp import ClientSession, web
from pytest_aiohttp import AiohttpServer

from otel_reqid_logging import RequestIdAccessLogger, RequestIdMiddleware
from tests.conftest import LineCollector

log = logging.getLogger("tests.app")


async def handler(request: web.Request) -> web.Response:
    log.info("handling")
    return web.Response(text="ok")


async def serve_and_get(aiohttp_server: AiohttpServer, path: str) -> tuple[str, str]:
    app = web.Application(middlewares=[RequestIdMiddleware()])
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, access_log_class=RequestIdAccessLogger)
    async with ClientSession() as session, session.get(server.make_url(path)) as response:
        await response.read()
        return response.headers["X-Request-ID"], str(response.status)


async def test_access_line_has_the_handlers_ids(
    aiohttp_server: AiohttpServer, log_lines: LineCollector
) -> None:
    """The access line, written after the middleware returned, has the handler's ids."""
    short_id, _ = await serve_and_get(aiohttp_server, "/")
    handled = next(r for r in log_lines.records if r.name == "tests.app")
    access = next(r for r in log_lines.records if r.name == "aiohttp.access")
    assert vars(access)["request_id"] == vars(handled)["request_id"] == short_id
    assert vars(access)["trace_id"] == vars(handled)["trace_id"]
    assert re.fullmatch("[0-9a-f]{32}", vars(access)["trace_id"])
    assert vars(access)["first_request_line"] == "GET / HTTP/1.1"
    line = log_lines.lines[log_lines.records.index(access)]
    assert f"[req:{short_id} trace:{vars(handled)['trace_id']}]" in line
    assert '"GET / HTTP/1.1" 200' in line


async def test_access_line_without_record_factory(aiohttp_server: AiohttpServer) -> None:
    """Without the factory installed, the access record still has the ids as attributes."""
    collector = LineCollector()
    access_logger = logging.getLogger("aiohttp.access")
    access_logger.addHandler(collector)
    access_logger.setLevel(logging.INFO)
    try:
        short_id, _ = await serve_and_get(aiohttp_server, "/")
    finally:
        access_logger.removeHandler(collector)
        access_logger.setLevel(logging.NOTSET)
    (record,) = collector.records
    assert vars(record)["request_id"] == short_id
    assert f"[req:{short_id} trace:" in collector.lines[0]


async def test_request_without_ids_gets_placeholders(
    aiohttp_server: AiohttpServer, log_lines: LineCollector
) -> None:
    """A request the middleware never saw (no middleware) is logged with "-" ids."""
    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, access_log_class=RequestIdAccessLogger)
    async with ClientSession() as session, session.get(server.make_url("/")) as response:
        assert response.status == 200
    access = next(r for r in log_lines.records if r.name == "aiohttp.access")
    assert vars(access)["request_id"] == "-"
    assert not any("Error in logging" in line for line in log_lines.lines)
