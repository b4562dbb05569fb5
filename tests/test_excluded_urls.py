"""Excluded URLs: the library's own ``excluded_urls`` (no span, no ids, no header, no access
line) and OpenTelemetry's variables (no span, and so no ids and no header; nothing else)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util.http import get_excluded_urls, parse_excluded_urls
from pytest_aiohttp import AiohttpServer

from otel_reqid_logging import (
    RequestIdAccessLogger,
    RequestIdInstrumentor,
    RequestIdMiddleware,
    current_request_id,
)
from otel_reqid_logging._options import (
    otel_exclude_list,
    otel_excluded_url_patterns,
    resolve_options,
)
from tests.conftest import LineCollector

log = logging.getLogger("tests.app")
otel_subclass_warning = pytest.mark.filterwarnings(
    "ignore:Inheritance class _InstrumentedApplication:DeprecationWarning"
)


async def hello(request: web.Request) -> web.Response:
    log.info("handling %s", request.path)
    return web.Response(text=current_request_id() or "-")


async def stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write((current_request_id() or "-").encode())
    return response


def routes(app: web.Application) -> web.Application:
    for path in ("/", "/health", "/ready", "/api/health-report", "/stream-health"):
        app.router.add_get(path, stream if path.startswith("/stream") else hello)
    return app


async def get(server: TestServer, path: str, **kwargs: object) -> tuple[str, dict[str, str]]:
    async with (
        ClientSession() as session,
        session.get(server.make_url(path), **kwargs) as response,  # type: ignore[arg-type]
    ):
        assert response.status == 200
        return await response.text(), dict(response.headers)


def access_paths(log_lines: LineCollector) -> list[str]:
    return [
        str(vars(r)["first_request_line"]).split()[1]
        for r in log_lines.records
        if r.name == "aiohttp.access"
    ]


def server_span_paths(exporter: InMemorySpanExporter) -> list[str]:
    return [
        str(dict(s.attributes or {}).get("url.path", dict(s.attributes or {}).get("http.target")))
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.SERVER
    ]


@pytest.fixture
def instrumentor() -> Iterator[RequestIdInstrumentor]:
    instance = RequestIdInstrumentor()
    yield instance
    if instance.is_instrumented_by_opentelemetry:
        instance.uninstrument()


async def test_middleware_leaves_excluded_requests_alone(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
) -> None:
    """No span, no header, no ids in the handler's lines, no access line; others as usual."""
    middleware = RequestIdMiddleware(tracer_provider=provider, excluded_urls="^/health$,/ready")
    server = await aiohttp_server(
        routes(web.Application(middlewares=[middleware])), access_log_class=RequestIdAccessLogger
    )

    for path in ("/health", "/ready"):
        body, headers = await get(server, path)
        assert body == "-"
        assert "X-Request-ID" not in headers
    body, headers = await get(server, "/api/health-report")
    assert headers["X-Request-ID"] == body != "-"

    assert server_span_paths(exporter) == ["/api/health-report"]
    assert access_paths(log_lines) == ["/api/health-report"]
    handled = {
        r.getMessage(): vars(r)["request_id"] for r in log_lines.records if r.name == "tests.app"
    }
    assert handled == {
        "handling /health": "-",
        "handling /ready": "-",
        "handling /api/health-report": body,
    }


async def test_patterns_search_the_path_and_the_full_url(
    aiohttp_server: AiohttpServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """`^/path` matches as in OpenTelemetry's aiohttp-server; host and query are searchable."""
    middleware = RequestIdMiddleware(
        tracer_provider=provider,
        excluded_urls=[r"^/health$", r"^http://probe\.internal(:\d+)?/", r"[?&]probe=1(&|$)"],
    )
    server = await aiohttp_server(routes(web.Application(middlewares=[middleware])))

    assert (await get(server, "/health"))[0] == "-"
    assert (await get(server, "/", headers={"Host": "probe.internal"}))[0] == "-"
    assert (await get(server, "/ready?probe=1"))[0] == "-"
    assert (await get(server, "/ready?probe=10"))[0] != "-"
    assert len(server_span_paths(exporter)) == 1


async def test_a_host_that_makes_no_url_is_matched_by_path(aiohttp_server: AiohttpServer) -> None:
    """A Host header yarl refuses leaves the full URL out; the path still counts."""
    # No tracer provider: nothing records, so only the exclusion looks at the URL here.
    middleware = RequestIdMiddleware(excluded_urls=[r"^/health$", r"^http://probe/"])
    server = await aiohttp_server(routes(web.Application(middlewares=[middleware])))
    assert (await get(server, "/health", headers={"Host": "host:99999"}))[0] == "-"
    assert (await get(server, "/", headers={"Host": "host:99999"}))[0] != "-"


async def test_opentelemetry_variable_excludes_the_span_and_keeps_the_access_line(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS means here what it means to OpenTelemetry:
    no span (so no ids, no header); aiohttp still writes the access line, without ids."""
    monkeypatch.setenv("OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS", "/health")
    middleware = RequestIdMiddleware(tracer_provider=provider)
    server = await aiohttp_server(
        routes(web.Application(middlewares=[middleware])), access_log_class=RequestIdAccessLogger
    )
    body, headers = await get(server, "/health")
    assert body == "-"
    assert "X-Request-ID" not in headers
    body, headers = await get(server, "/")
    assert headers["X-Request-ID"] == body != "-"
    assert server_span_paths(exporter) == ["/"]
    assert access_paths(log_lines) == ["/health", "/"]
    access = {
        access_paths_of(r): vars(r)["request_id"]
        for r in log_lines.records
        if r.name == "aiohttp.access"
    }
    assert access == {"/health": "-", "/": body}


def access_paths_of(record: logging.LogRecord) -> str:
    return str(vars(record)["first_request_line"]).split()[1]


async def test_own_variable_also_removes_the_access_line(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_REQID_EXCLUDED_URLS is excluded_urls: no span, no header, no access line."""
    monkeypatch.setenv("OTEL_REQID_EXCLUDED_URLS", "^/health$")
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "^/ready$")
    middleware = RequestIdMiddleware(tracer_provider=provider)
    server = await aiohttp_server(
        routes(web.Application(middlewares=[middleware])), access_log_class=RequestIdAccessLogger
    )
    for path in ("/health", "/ready"):
        body, headers = await get(server, path)
        assert body == "-"
        assert "X-Request-ID" not in headers
    assert server_span_paths(exporter) == []
    assert access_paths(log_lines) == ["/ready"]


OTEL_VALUES = ["", "/health", " ^/a$ , b ", "health,", ",", "a|b", "^/x,^http://h/", "(?i)HEALTH"]
URLS = ["/health", "/a", "/b", "http://h/x", "/x", "/other", "http://h/HEALTH"]


@pytest.mark.parametrize("raw", OTEL_VALUES)
def test_opentelemetry_variables_are_parsed_as_opentelemetry_parses_them(raw: str) -> None:
    """Every value matches exactly the URLs OpenTelemetry's ExcludeList matches (an empty
    item, as in "health,", matches everything there, and so here)."""
    theirs = parse_excluded_urls(raw)
    ours = otel_exclude_list(otel_excluded_url_patterns(raw), "test")
    for url in URLS:
        assert (ours is not None and ours(url)) is theirs.url_disabled(url), url


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS": "/a", "OTEL_PYTHON_EXCLUDED_URLS": "/b"},
        {"OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS": "", "OTEL_PYTHON_EXCLUDED_URLS": "/b"},
        {"OTEL_PYTHON_EXCLUDED_URLS": "/b"},
        {},
    ],
)
def test_opentelemetry_variables_are_chosen_as_opentelemetry_chooses(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The aiohttp-server variable whenever it is set (empty too), else the general one."""
    for name in ("OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    theirs = get_excluded_urls("AIOHTTP_SERVER")
    ours = resolve_options({}).url_untraced
    for url in ("/a", "/b", "/c"):
        assert (ours is not None and ours(url)) is theirs.url_disabled(url), url


@otel_subclass_warning
async def test_instrument_excludes_beside_otel_aiohttp_server(
    instrumentor: RequestIdInstrumentor,
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
) -> None:
    """instrument(excluded_urls=...) keeps OpenTelemetry's span and aiohttp's line away too.

    OpenTelemetry's aiohttp-server instrumentation is given no exclusions of its own here:
    the request gets no span because ours tells its middleware to stand aside.
    """
    otel_server = AioHttpServerInstrumentor()
    otel_server.instrument(tracer_provider=provider)
    try:
        instrumentor.instrument(tracer_provider=provider, excluded_urls="^/health$")
        server = await aiohttp_server(routes(web.Application()))
        assert (await get(server, "/health"))[0] == "-"
        body, headers = await get(server, "/ready")
        assert headers["X-Request-ID"] == body != "-"
    finally:
        otel_server.uninstrument()
    assert server_span_paths(exporter) == ["/ready"]
    # aiohttp's own AccessLogger, the instrumentor having made it carry the ids.
    assert access_paths(log_lines) == ["/ready"]


async def test_instrument_app_excludes_streamed_responses(
    instrumentor: RequestIdInstrumentor,
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
) -> None:
    """instrument_app(app, excluded_urls=...): a streamed excluded response gets no header."""
    app = routes(web.Application())
    instrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="health")
    try:
        server = await aiohttp_server(app)
        body, headers = await get(server, "/stream-health")
        assert body == "-"
        assert "X-Request-ID" not in headers
        body, headers = await get(server, "/")
        assert headers["X-Request-ID"] == body != "-"
    finally:
        instrumentor.uninstrument_app(app)
    assert server_span_paths(exporter) == ["/"]
    assert access_paths(log_lines) == ["/"]


async def test_excluded_in_a_sub_application(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the middleware on the app and on its sub-app, an excluded path gets no span."""
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "^/sub/health$")
    inner = routes(web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)]))
    outer = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    outer.add_subapp("/sub", inner)
    server = await aiohttp_server(outer)
    assert (await get(server, "/sub/health"))[0] == "-"
    assert (await get(server, "/sub/ready"))[0] != "-"
    assert server_span_paths(exporter) == ["/sub/ready"]


@otel_subclass_warning
async def test_opentelemetry_variables_search_the_path_as_aiohttp_server_does(
    instrumentor: RequestIdInstrumentor,
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpenTelemetry's aiohttp-server instrumentation searches its excluded URLs in the
    request path alone; so does the library: a pattern only the full URL would match
    (the scheme and host) excludes nothing in either, and beside it a request that has
    OpenTelemetry's span has its ids too."""
    monkeypatch.setenv("OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS", r"^http://,^/health$")
    otel_server = AioHttpServerInstrumentor()
    otel_server.instrument(tracer_provider=provider)
    try:
        instrumentor.instrument(tracer_provider=provider)
        server = await aiohttp_server(routes(web.Application()))
        body, headers = await get(server, "/ready")
        assert headers["X-Request-ID"] == body != "-"
        assert (await get(server, "/health"))[0] == "-"
    finally:
        otel_server.uninstrument()
    assert server_span_paths(exporter) == ["/ready"]
