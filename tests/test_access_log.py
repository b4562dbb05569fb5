"""RequestIdAccessLogger: the access line carries the ids of its request."""

from __future__ import annotations

import contextvars
import logging
import re
from unittest import mock

import pytest
from aiohttp import ClientSession, HttpVersion11, web
from aiohttp.test_utils import make_mocked_request
from aiohttp.typedefs import Handler
from aiohttp.web_log import AccessLogger
from opentelemetry import trace
from pytest_aiohttp import AiohttpServer

from otel_reqid_logging import (
    RequestIdAccessLogger,
    RequestIdInstrumentor,
    RequestIdMiddleware,
    current_request_id,
)
from otel_reqid_logging._context import EXCLUDED_KEY, REQUEST_IDS_KEY
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


def _line_without_private_helpers(
    self: AccessLogger, request: web.BaseRequest, response: web.StreamResponse, time: float
) -> None:
    """An AccessLogger.log written as a later aiohttp might: no _format_line, no _log_format."""
    self.logger.info('%s "%s %s" %s', request.remote, request.method, request.path, response.status)


def _gone(*args: object, **kwargs: object) -> None:
    raise AttributeError("this aiohttp has no such helper")


async def test_access_line_survives_other_aiohttp_internals(
    aiohttp_server: AiohttpServer, log_lines: LineCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line comes from aiohttp's own log(), so changed private helpers cannot drop it.

    A stand-in for an aiohttp release with other internals: the private helpers raise,
    and ``AccessLogger.log`` no longer uses them.
    """
    monkeypatch.setattr(AccessLogger, "_format_line", _gone)
    monkeypatch.setattr(AccessLogger, "log", _line_without_private_helpers)
    short_id, _ = await serve_and_get(aiohttp_server, "/")
    (access,) = [r for r in log_lines.records if r.name == "aiohttp.access"]
    assert vars(access)["request_id"] == short_id
    assert access.getMessage().endswith('"GET /" 200')
    assert not any("Error in logging" in line for line in log_lines.lines)


async def test_access_line_has_the_requests_span_as_current_context(
    aiohttp_server: AiohttpServer,
) -> None:
    """While the line is handled, the request's span context is the current one."""
    seen: list[str] = []

    class SpanReader(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            context = trace.get_current_span().get_span_context()
            seen.append(f"{context.trace_id:032x}" if context.is_valid else "none")

    access_logger = logging.getLogger("aiohttp.access")
    reader = SpanReader()
    collector = LineCollector()
    access_logger.addHandler(reader)
    access_logger.addHandler(collector)
    access_logger.setLevel(logging.INFO)
    try:
        await serve_and_get(aiohttp_server, "/")
    finally:
        access_logger.removeHandler(reader)
        access_logger.removeHandler(collector)
        access_logger.setLevel(logging.NOTSET)
    (record,) = collector.records
    assert seen == [vars(record)["trace_id"]]


async def test_plain_line_when_adding_ids_fails(
    aiohttp_server: AiohttpServer, log_lines: LineCollector
) -> None:
    """If the ids cannot be put in effect, aiohttp's plain line is written, not none.

    A stand-in for a failure on our side: a middleware stores something that is not the
    request's ids under the key the access logger reads.
    """

    @web.middleware
    async def spoil(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[REQUEST_IDS_KEY] = object()  # type: ignore[misc]
        return await handler(request)

    app = web.Application(middlewares=[spoil])
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, access_log_class=RequestIdAccessLogger)
    async with ClientSession() as session, session.get(server.make_url("/")) as response:
        assert response.status == 200
    (access,) = [r for r in log_lines.records if r.name == "aiohttp.access"]
    assert '"GET / HTTP/1.1" 200' in access.getMessage()
    assert vars(access)["request_id"] == "-"
    assert not any("Error in logging" in line for line in log_lines.lines)


async def _request_after_middleware() -> tuple[web.Request, str]:
    """A request the middleware has handled (ids and context left on it), and its id."""
    app = web.Application()
    request = make_mocked_request("GET", "/", app=app)
    response = await RequestIdMiddleware()(request, handler)
    return request, response.headers["X-Request-ID"]


async def test_line_sees_the_callers_context_vars_and_leaves_none_of_its_own(
    log_lines: LineCollector,
) -> None:
    """The line runs in the caller's context plus the request's ids, which end with it.

    aiohttp writes the line in the task that ran the handler, so ContextVars the handler
    set are still there; the ids brought back for the line must not stay after it.
    """
    request, short_id = await _request_after_middleware()
    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")
    seen: list[tuple[str, str | None, bool]] = []

    class Reader(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            span_valid = trace.get_current_span().get_span_context().is_valid
            seen.append((tenant.get("-"), current_request_id(), span_valid))

    access_logger = logging.getLogger("tests.access.context")
    access_logger.addHandler(Reader())
    access_logger.setLevel(logging.INFO)
    token = tenant.set("acme")
    try:
        RequestIdAccessLogger(access_logger).log(request, web.Response(text="ok"), 0.001)
    finally:
        tenant.reset(token)
        access_logger.handlers.clear()
        access_logger.filters.clear()
    assert seen == [("acme", short_id, True)]
    assert current_request_id() is None
    assert not trace.get_current_span().get_span_context().is_valid


async def test_excluded_request_with_ids_writes_no_line(log_lines: LineCollector) -> None:
    """A request marked excluded writes no line even if a later middleware gave it ids.

    An outer application's middleware may exclude a request that an inner one, without
    ``excluded_urls``, then handles: the mark still wins.
    """
    request, _ = await _request_after_middleware()
    request[EXCLUDED_KEY] = True
    access_logger = logging.getLogger("tests.access.excluded")
    collector = LineCollector()
    access_logger.addHandler(collector)
    access_logger.setLevel(logging.INFO)
    try:
        RequestIdAccessLogger(access_logger).log(request, web.Response(text="ok"), 0.001)
        del request[EXCLUDED_KEY]
        RequestIdAccessLogger(access_logger).log(request, web.Response(text="ok"), 0.001)
    finally:
        access_logger.handlers.clear()
        access_logger.filters.clear()
    assert len(collector.records) == 1  # only the line of the request once unmarked


class _Doubles:
    """What aiohttp's own access-logger tests pass: test doubles for request and response."""

    @staticmethod
    def request() -> mock.Mock:
        return mock.Mock(
            headers={"User-Agent": "probe"},
            method="GET",
            path_qs="/path",
            version=HttpVersion11,
            remote="127.0.0.2",
        )

    @staticmethod
    def response() -> mock.Mock:
        return mock.Mock(headers={}, body_length=42, status=200)


@pytest.mark.parametrize("double", ["mock", "mocked_request"])
@pytest.mark.parametrize("wiring", ["class", "instrumented"])
def test_a_request_that_is_no_real_one_gets_aiohttps_plain_line(
    log_lines: LineCollector, double: str, wiring: str
) -> None:
    """A Mock request (as aiohttp's own access-logger tests pass), or a mocked request with no
    ids, gets exactly the line aiohttp's AccessLogger writes for it; nothing raises."""
    fmt = '%a "%r" %s %b "%{User-Agent}i"'
    request: object = (
        _Doubles.request()
        if double == "mock"
        else make_mocked_request("GET", "/path", headers={"User-Agent": "probe"})
    )
    response = _Doubles.response()
    plain = logging.getLogger("tests.plain_access")
    AccessLogger(plain, fmt).log(request, response, 0.5)  # type: ignore[arg-type]
    (expected,) = [r.getMessage() for r in log_lines.records]
    ours = logging.getLogger("tests.our_access")
    instrumentor = RequestIdInstrumentor()
    if wiring == "class":
        RequestIdAccessLogger(ours, fmt).log(request, response, 0.5)  # type: ignore[arg-type]
    else:
        instrumentor.instrument(record_factory=False)
        try:
            AccessLogger(ours, fmt).log(request, response, 0.5)  # type: ignore[arg-type]
        finally:
            instrumentor.uninstrument()
    (line,) = [r for r in log_lines.records if r.name == "tests.our_access"]
    assert line.getMessage() == expected
    assert vars(line)["request_id"] == "-"
    assert not any("Error in logging" in text for text in log_lines.lines)


def test_a_mock_logger_gets_aiohttps_own_calls() -> None:
    """A Mock for the logger (aiohttp's own tests) gets aiohttp's calls, no filter of ours."""
    logger = mock.Mock()
    RequestIdAccessLogger(logger, "%s").log(_Doubles.request(), _Doubles.response(), 0.5)
    assert not logger.exception.called
    logger.info.assert_called_once()
    assert not logger.addFilter.called
