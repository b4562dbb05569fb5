"""RequestIdInstrumentor, process-wide and per app, alone and beside OpenTelemetry's own."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib.metadata import requires
from unittest import mock

import pytest
from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.abc import AbstractMatchInfo, AbstractRouter
from aiohttp.typedefs import Handler
from aiohttp.web import Application  # bound before instrument(), on purpose
from aiohttp.web_log import AccessLogger
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.instrumentation.logging import LoggingInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pytest_aiohttp import AiohttpClient, AiohttpServer

from otel_reqid_logging import (
    RequestIdInstrumentor,
    RequestIdMiddleware,
    current_request_id,
    install_record_factory,
)
from otel_reqid_logging import instrumentor as instrumentor_module
from otel_reqid_logging._options import resolve_options
from otel_reqid_logging.records import _record_factory_installed
from tests.conftest import LineCollector

log = logging.getLogger("tests.app")
# OpenTelemetry's aiohttp-server instrumentation subclasses web.Application, which aiohttp
# discourages with a DeprecationWarning; that warning is theirs, not ours.
otel_subclass_warning = pytest.mark.filterwarnings(
    "ignore:Inheritance class _InstrumentedApplication:DeprecationWarning"
)


async def hello(request: web.Request) -> web.Response:
    log.info("hello")
    return web.Response(text=current_request_id() or "none")


def app_with_routes(app: web.Application) -> web.Application:
    app.router.add_get("/", hello)
    return app


async def fetch(server_url: str) -> tuple[str, str | None]:
    async with (
        ClientSession(timeout=ClientTimeout(total=20)) as session,
        session.get(server_url) as response,
    ):
        return await response.text(), response.headers.get("X-Request-ID")


@pytest.fixture
def instrumentor() -> Iterator[RequestIdInstrumentor]:
    """The process-wide instrumentor, uninstrumented after the test whatever happens."""
    instance = RequestIdInstrumentor()
    yield instance
    if instance.is_instrumented_by_opentelemetry:
        instance.uninstrument()


@pytest.fixture
def otel_server(provider: TracerProvider) -> Iterator[AioHttpServerInstrumentor]:
    """OpenTelemetry's aiohttp-server instrumentor, taken off after the test."""
    instance = AioHttpServerInstrumentor()
    yield instance
    if instance.is_instrumented_by_opentelemetry:
        instance.uninstrument()


def server_spans(exporter: InMemorySpanExporter) -> list[str]:
    return [s.name for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


async def test_instrument_reaches_apps_made_afterwards(
    instrumentor: RequestIdInstrumentor, aiohttp_server: AiohttpServer
) -> None:
    """Apps built from a pre-imported Application, with a tuple of middlewares, get ids."""
    instrumentor.instrument()

    @web.middleware
    async def passthrough(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request)

    app = app_with_routes(Application(middlewares=(passthrough,)))
    server = await aiohttp_server(app)
    body, header = await fetch(str(server.make_url("/")))
    assert header is not None
    assert body == header
    assert sum(isinstance(m, RequestIdMiddleware) for m in app.middlewares) == 1


async def test_instrument_covers_access_log_and_records(
    instrumentor: RequestIdInstrumentor,
    aiohttp_server: AiohttpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no other change, the handler's lines and aiohttp's access line carry the ids."""
    caplog.set_level(logging.INFO)
    instrumentor.instrument()
    assert _record_factory_installed()
    server = await aiohttp_server(app_with_routes(web.Application()))
    _, header = await fetch(str(server.make_url("/")))
    handled = next(r for r in caplog.records if r.name == "tests.app")
    access = next(r for r in caplog.records if r.name == "aiohttp.access")
    assert vars(handled)["request_id"] == vars(access)["request_id"] == header
    assert vars(handled)["trace_id"] == vars(access)["trace_id"]


async def test_uninstrument_undoes_everything(
    instrumentor: RequestIdInstrumentor,
    aiohttp_server: AiohttpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After uninstrument(), new apps get nothing, running ones stop, the factory is gone."""
    caplog.set_level(logging.INFO)
    factory = logging.getLogRecordFactory()
    original_pre_freeze = web.Application.pre_freeze
    instrumentor.instrument()
    running = await aiohttp_server(app_with_routes(web.Application()))
    assert (await fetch(str(running.make_url("/"))))[1] is not None
    instrumentor.uninstrument()
    assert web.Application.pre_freeze is original_pre_freeze
    assert logging.getLogRecordFactory() is factory
    fresh = await aiohttp_server(app_with_routes(web.Application()))
    for server in (running, fresh):
        body, header = await fetch(str(server.make_url("/")))
        assert (body, header) == ("none", None)


def test_freeze_leaves_what_is_not_an_application_to_aiohttp(
    instrumentor: RequestIdInstrumentor,
) -> None:
    """aiohttp's own test_app_freeze puts a Mock among an app's sub-applications and
    freezes the app: with instrument() on, that freeze reaches the Mock as it does without
    the library, which reads no attribute of it. (The Mock is aiohttp's test's, reproduced:
    no real sub-application can be made to stand for it.)"""
    instrumentor.instrument()
    app = web.Application()
    subapp = mock.Mock()
    subapp._middlewares = ()
    app._subapps.append(subapp)

    app.freeze()

    assert subapp.freeze.call_count == 1
    assert [call[0] for call in subapp.mock_calls] == ["pre_freeze", "freeze"]


async def test_an_app_with_a_router_of_its_own_answers_as_without_the_library(
    instrumentor: RequestIdInstrumentor, aiohttp_client: AiohttpClient
) -> None:
    """An app may bring its own ``AbstractRouter``, which need not list resources (aiohttp's
    own test_412_is_returned does): with instrument() on, the request still gets the answer
    the router gives (raised while resolving, before any middleware runs, so no ids)."""

    class OwnRouter(AbstractRouter):
        async def resolve(self, request: web.Request) -> AbstractMatchInfo:
            raise web.HTTPPreconditionFailed

    instrumentor.instrument()
    with pytest.warns(DeprecationWarning, match="router"):
        # aiohttp types the argument as its own router, though it takes any AbstractRouter.
        app = web.Application(router=OwnRouter())  # type: ignore[arg-type]
    client = await aiohttp_client(app)

    response = await client.get("/")

    assert response.status == 412


async def test_subapps_get_one_id(
    instrumentor: RequestIdInstrumentor,
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """A request routed into a sub-application gets one span and one id."""
    instrumentor.instrument(tracer_provider=provider)
    app = app_with_routes(web.Application())
    app.add_subapp("/sub", app_with_routes(web.Application()))
    server = await aiohttp_server(app)
    body, header = await fetch(str(server.make_url("/sub/")))
    assert body == header
    assert server_spans(exporter) == ["GET /sub/"]


async def test_instrument_app_and_uninstrument_app(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """instrument_app acts on one app only; uninstrument_app takes it off again."""
    caplog.set_level(logging.INFO)  # so that aiohttp writes access lines
    access_filters = logging.getLogger("aiohttp.access").filters
    factory = logging.getLogRecordFactory()
    original_access_log = AccessLogger.log
    instrumentor = RequestIdInstrumentor()
    chosen = app_with_routes(web.Application())
    other = app_with_routes(web.Application())
    instrumentor.instrument_app(chosen, tracer_provider=provider, header_name="X-Ref")
    instrumentor.instrument_app(chosen, tracer_provider=provider, header_name="X-Ref")
    assert sum(isinstance(m, RequestIdMiddleware) for m in chosen.middlewares) == 1
    chosen_server = await aiohttp_server(chosen)
    other_server = await aiohttp_server(other)
    async with ClientSession() as session:
        async with session.get(chosen_server.make_url("/")) as response:
            assert response.headers["X-Ref"] == await response.text()
        async with session.get(other_server.make_url("/")) as response:
            assert await response.text() == "none"
    assert server_spans(exporter) == ["GET /"]
    assert len(access_filters) == 1
    instrumentor.uninstrument_app(chosen)
    body, _ = await fetch(str(chosen_server.make_url("/")))
    assert body == "none"
    # The last app gone, the process-wide log wiring goes too.
    assert logging.getLogRecordFactory() is factory
    assert AccessLogger.log is original_access_log
    assert access_filters == []
    with pytest.raises(RuntimeError, match="before the application starts"):
        instrumentor.instrument_app(chosen)


async def test_streaming_response_gets_header_through_signal(
    aiohttp_server: AiohttpServer,
) -> None:
    """With instrument_app, a handler that prepares its own response still sends the header."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write((current_request_id() or "").encode())
        return response

    app = web.Application()
    app.router.add_get("/", stream)
    instrumentor = RequestIdInstrumentor()
    instrumentor.instrument_app(app)
    try:
        server = await aiohttp_server(app)
        body, header = await fetch(str(server.make_url("/")))
    finally:
        instrumentor.uninstrument_app(app)
    assert header == body != ""


@otel_subclass_warning
@pytest.mark.parametrize("ours_first", [True, False])
async def test_one_server_span_beside_otel_aiohttp_server(
    instrumentor: RequestIdInstrumentor,
    otel_server: AioHttpServerInstrumentor,
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    ours_first: bool,
) -> None:
    """Whatever the load order, one SERVER span per request, and our id comes from it."""
    if ours_first:
        instrumentor.instrument(tracer_provider=provider)
        otel_server.instrument(tracer_provider=provider)
    else:
        otel_server.instrument(tracer_provider=provider)
        instrumentor.instrument(tracer_provider=provider)
    app = app_with_routes(web.Application())
    app.add_subapp("/sub", app_with_routes(web.Application()))
    server = await aiohttp_server(app)
    headers = []
    for path in ("/", "/sub/"):
        body, header = await fetch(str(server.make_url(path)))
        assert body == header
        headers.append(header)
    spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert [dict(s.attributes or {})["request.id"] for s in spans] == headers
    for span in spans:
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "opentelemetry.instrumentation.aiohttp_server"


async def test_beside_otel_logging_instrumentation(
    instrumentor: RequestIdInstrumentor,
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
) -> None:
    """Both sets of attributes are present; removing either one first keeps the other."""
    log_lines = LineCollector()
    log_lines.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger().addHandler(log_lines)
    logging.getLogger().setLevel(logging.INFO)
    otel_logging = LoggingInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    otel_logging.instrument(tracer_provider=provider, inject_trace_context=True)
    try:
        server = await aiohttp_server(app_with_routes(web.Application()))
        url = str(server.make_url("/"))
        _, header = await fetch(url)
        record = next(r for r in log_lines.records if r.name == "tests.app")
        assert vars(record)["request_id"] == header
        assert vars(record)["otelTraceID"] == vars(record)["trace_id"]

        instrumentor.uninstrument()
        log_lines.records.clear()
        log.info("after ours is gone")
        assert vars(log_lines.records[-1])["otelTraceID"] == "0"
        assert "request_id" not in vars(log_lines.records[-1])
    finally:
        otel_logging.uninstrument()
    instrumentor.instrument()
    otel_logging.instrument(tracer_provider=provider, inject_trace_context=True)
    otel_logging.uninstrument()
    log.info("after theirs is gone")
    assert vars(log_lines.records[-1])["request_id"] == "-"
    instrumentor.uninstrument()

    # Theirs first, then ours: removing theirs first puts back the factory it found,
    # which drops ours from the chain; records made by loggers keep the ids all the same
    # (makeRecord gives them), and installing ours again puts the factory back.
    otel_logging.instrument(tracer_provider=provider, inject_trace_context=True)
    instrumentor.instrument()
    otel_logging.uninstrument()
    log.info("ours cut out of the factory chain")
    assert vars(log_lines.records[-1])["request_id"] == "-"
    install_record_factory()
    log.info("ours back")
    assert vars(log_lines.records[-1])["request_id"] == "-"
    assert logging.getLogRecordFactory() is not logging.LogRecord


def test_options_from_environment_and_keywords() -> None:
    """Environment variables give defaults, keywords win, bad values say what is wrong."""
    env = {"OTEL_REQID_HEADER": "none", "OTEL_REQID_ID_LENGTH": "10", "OTEL_REQID_SENTRY": "off"}
    options = resolve_options({"id_length": 6}, env)
    assert (options.header_name, options.id_length, options.sentry) == (None, 6, False)
    with pytest.raises(ValueError, match="OTEL_REQID_ID_LENGTH must be a number, got 'ten'"):
        resolve_options({}, {"OTEL_REQID_ID_LENGTH": "ten"})
    with pytest.raises(ValueError, match="OTEL_REQID_ADOPT_INCOMING_ID must be true or false"):
        resolve_options({}, {"OTEL_REQID_ADOPT_INCOMING_ID": "maybe"})
    with pytest.raises(TypeError, match="unknown option"):
        resolve_options({"header": "X"}, {})


def test_instrumentation_dependencies_match_the_extra() -> None:
    """instrumentation_dependencies() agrees with the package's ``instruments`` extra."""
    extra = sorted(
        r.split(";")[0].replace(" ", "")
        for r in requires("otel-reqid-logging") or []
        if 'extra == "instruments"' in r
    )
    declared = sorted(
        d.replace(" ", "") for d in RequestIdInstrumentor().instrumentation_dependencies()
    )
    assert extra == declared


@pytest.mark.parametrize("form", ["positional", "keyword"])
async def test_instrument_with_an_app_is_instrument_app(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    form: str,
) -> None:
    """instrument(app) and instrument(app=app) wire that app only; uninstrument(app) undoes it."""
    log_lines = LineCollector()
    log_lines.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger().addHandler(log_lines)
    logging.getLogger().setLevel(logging.INFO)
    instrumentor = RequestIdInstrumentor()
    chosen = app_with_routes(web.Application())
    other = app_with_routes(web.Application())
    if form == "positional":
        instrumentor.instrument(chosen, tracer_provider=provider)
    else:
        instrumentor.instrument(app=chosen, tracer_provider=provider)
    # The process-wide switch stays off: other apps are left alone.
    assert not instrumentor.is_instrumented_by_opentelemetry
    chosen_server = await aiohttp_server(chosen)
    other_server = await aiohttp_server(other)

    body, header = await fetch(str(chosen_server.make_url("/")))
    assert header is not None
    assert body == header
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert dict(span.attributes or {})["request.id"] == header
    (handled,) = [r for r in log_lines.records if r.name == "tests.app"]
    assert vars(handled)["request_id"] == header

    log_lines.records.clear()
    assert await fetch(str(other_server.make_url("/"))) == ("none", None)
    assert len(exporter.get_finished_spans()) == 1
    (handled,) = [r for r in log_lines.records if r.name == "tests.app"]
    assert vars(handled)["request_id"] == "-"

    if form == "positional":
        instrumentor.uninstrument(chosen)
    else:
        instrumentor.uninstrument(app=chosen)
    assert await fetch(str(chosen_server.make_url("/"))) == ("none", None)
    assert len(exporter.get_finished_spans()) == 1
    assert not _record_factory_installed()


def nested_apps() -> tuple[web.Application, web.Application, web.Application]:
    return (
        app_with_routes(web.Application()),
        app_with_routes(web.Application()),
        app_with_routes(web.Application()),
    )


@otel_subclass_warning
@pytest.mark.parametrize("subapps_added", ["before", "after"])
@pytest.mark.parametrize("call", ["instrument", "instrument_app"])
async def test_one_server_span_with_nested_subapps_beside_otel(
    instrumentor: RequestIdInstrumentor,
    otel_server: AioHttpServerInstrumentor,
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    call: str,
    subapps_added: str,
) -> None:
    """Sub-applications two deep, added before or after the call: one SERVER span each."""
    otel_server.instrument(tracer_provider=provider)
    app, sub, subsub = nested_apps()

    def add_subapps() -> None:
        sub.add_subapp("/deeper", subsub)
        app.add_subapp("/sub", sub)

    if subapps_added == "before":
        add_subapps()
    if call == "instrument":
        instrumentor.instrument(tracer_provider=provider)
    else:
        instrumentor.instrument_app(app, tracer_provider=provider)
    if subapps_added == "after":
        add_subapps()
    server = await aiohttp_server(app)
    try:
        for path in ("/", "/sub/", "/sub/deeper/"):
            exporter.clear()
            body, header = await fetch(str(server.make_url(path)))
            assert body == header
            (span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
            assert dict(span.attributes or {})["request.id"] == header
    finally:
        if call == "instrument_app":
            instrumentor.uninstrument_app(app)


async def test_bad_environment_value_does_not_stop_instrument(
    instrumentor: RequestIdInstrumentor,
    aiohttp_server: AiohttpServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad OTEL_REQID_* value is one error line, not an exception that would stop
    opentelemetry-instrument; requests still get ids, with the defaults."""
    monkeypatch.setenv("OTEL_REQID_ID_LENGTH", "abc")
    with caplog.at_level(logging.ERROR, logger="otel_reqid_logging.instrumentor"):
        instrumentor.instrument()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "OTEL_REQID_ID_LENGTH" in errors[0]
    server = await aiohttp_server(app_with_routes(Application()))
    _body, header = await fetch(str(server.make_url("/")))
    assert header is not None
    assert len(header) == 8


def test_bad_keyword_option_still_raises(
    instrumentor: RequestIdInstrumentor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the environment is forgiven: a wrong keyword option fails where it is written."""
    monkeypatch.setenv("OTEL_REQID_ID_LENGTH", "abc")
    with pytest.raises(ValueError, match="id_length"):
        instrumentor.instrument(id_length=99)


async def test_instrument_app_options_reach_a_middleware_the_app_has(
    aiohttp_server: AiohttpServer,
) -> None:
    """Options given to instrument(app) apply even when the app carries the middleware."""
    app = app_with_routes(web.Application(middlewares=[RequestIdMiddleware()]))
    instrumentor = RequestIdInstrumentor()
    instrumentor.instrument(app, header_name="X-Req", traceresponse=True)
    try:
        assert sum(isinstance(m, RequestIdMiddleware) for m in app.middlewares) == 1
        server = await aiohttp_server(app)
        async with (
            ClientSession(timeout=ClientTimeout(total=10)) as session,
            session.get(server.make_url("/")) as response,
        ):
            assert "X-Req" in response.headers
            assert "X-Request-ID" not in response.headers
            assert response.headers["traceresponse"].startswith("00-")
    finally:
        instrumentor.uninstrument(app)


@otel_subclass_warning
async def test_without_aiohttps_private_middleware_chain_the_ids_stay_right(
    instrumentor: RequestIdInstrumentor,
    otel_server: AioHttpServerInstrumentor,
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With aiohttp's private prepared middleware chain gone (another aiohttp), the
    OpenTelemetry middleware of a sub-application added before instrument_app() cannot be
    told to stand aside: it starts a second SERVER span inside ours. The ids everywhere
    stay those of the request's outer span."""
    monkeypatch.setattr(instrumentor_module, "_PREPARED_MIDDLEWARES", "_gone_in_this_aiohttp")
    otel_server.instrument(tracer_provider=provider)
    app, sub, _ = nested_apps()
    app.add_subapp("/sub", sub)
    assert not hasattr(sub, "_gone_in_this_aiohttp")
    instrumentor.instrument_app(app, tracer_provider=provider)
    server = await aiohttp_server(app)
    try:
        body, header = await fetch(str(server.make_url("/sub/")))
    finally:
        instrumentor.uninstrument_app(app)
    assert body == header
    assert header is not None
    server_spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    # The cost of the fallback: a second span from OpenTelemetry's middleware in the
    # sub-application (the lowest versions tested start none there).
    assert len(server_spans) in {1, 2}
    (carrier,) = [s for s in server_spans if dict(s.attributes or {}).get("request.id")]
    assert dict(carrier.attributes or {})["request.id"] == header
    assert carrier.parent is None  # the outer one: the request's span
    (hello_record,) = [r for r in log_lines.records if r.name == "tests.app"]
    assert vars(hello_record)["request_id"] == header
    assert vars(hello_record)["trace_id"] == format(carrier.context.trace_id, "032x")


def test_subapplications_are_found_through_the_public_route_table() -> None:
    """Sub-applications (add_subapp, add_domain) are read from app.router, not aiohttp's
    private list: the same ones, in order."""
    app, sub, other = nested_apps()
    app.add_subapp("/sub", sub)
    app.add_domain("example.com", other)
    assert instrumentor_module._subapplications(app) == [sub, other]
    assert instrumentor_module._subapplications(sub) == []


async def test_uninstrument_takes_the_error_line_filter_off_and_loses_no_line(
    instrumentor: RequestIdInstrumentor,
    aiohttp_server: AiohttpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A crash puts the error-line filter on aiohttp's server logger, with the ids on its
    line; after uninstrument() the filter is off it, and a crash on the app still running
    gets aiohttp's line once, as aiohttp writes it."""

    async def crash(request: web.Request) -> web.Response:
        raise ZeroDivisionError

    def error_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "aiohttp.server"]

    caplog.set_level(logging.INFO)
    server_logger = logging.getLogger("aiohttp.server")
    instrumentor.instrument()
    app = web.Application()
    app.router.add_get("/", crash)
    running = await aiohttp_server(app)
    _, header = await fetch(str(running.make_url("/")))
    (first,) = error_lines()
    assert header is not None
    assert vars(first)["request_id"] == header
    assert [f for f in server_logger.filters if type(f).__name__ == "_ErrorLineFilter"]

    instrumentor.uninstrument()
    assert not [f for f in server_logger.filters if type(f).__name__ == "_ErrorLineFilter"]
    caplog.clear()
    _, header = await fetch(str(running.make_url("/")))
    (second,) = error_lines()
    assert header is None
    assert second.getMessage().startswith("Error handling request")
    assert "request_id" not in vars(second)
