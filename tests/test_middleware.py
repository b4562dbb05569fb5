"""RequestIdMiddleware on real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

import pytest
from aiohttp import ClientPayloadError, ClientResponse, ClientSession, WSMsgType, web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import trace as trace_api
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagate import get_global_textmap, set_global_textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pytest_aiohttp import AiohttpClient, AiohttpServer

from otel_reqid_logging import (
    REQUEST_ID_KEY,
    RequestIdMiddleware,
    _error_line,
    current_request_id,
    current_trace_id,
    request_id_from_span_id,
)
from otel_reqid_logging import middleware as middleware_module
from otel_reqid_logging._error_line import remove_error_line_filters
from otel_reqid_logging._ids import ALPHABET
from otel_reqid_logging._incoming import _w3c_headers
from tests.conftest import LineCollector

log = logging.getLogger("tests.app")
ID_RE = re.compile(f"[{ALPHABET}]{{8}}")
TRACE_RE = re.compile("[0-9a-f]{32}")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def hello(request: web.Request) -> web.Response:
    log.info("hello from %s", request.match_info.get("name", "nobody"))
    return web.json_response({"request_id": current_request_id(), "trace_id": current_trace_id()})


def make_app(*middlewares: RequestIdMiddleware) -> web.Application:
    app = web.Application(middlewares=list(middlewares))
    app.router.add_get("/hello/{name}", hello)
    return app


async def test_own_span_carries_request_id(
    aiohttp_client: AiohttpClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """With no outer span, the middleware starts one SERVER span named after the route."""
    client = await aiohttp_client(make_app(RequestIdMiddleware(tracer_provider=provider)))
    response = await client.get("/hello/ann?q=1", headers={"User-Agent": "probe"})
    body = await response.json()

    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /hello/{name}"
    context = span.get_span_context()
    assert context is not None
    short_id = request_id_from_span_id(context.span_id)
    assert ID_RE.fullmatch(short_id)
    assert response.headers["X-Request-ID"] == short_id == body["request_id"]
    assert body["trace_id"] == format(context.trace_id, "032x")
    attributes = dict(span.attributes or {})
    assert attributes["request.id"] == short_id
    # OpenTelemetry's default (old) HTTP conventions: OTEL_SEMCONV_STABILITY_OPT_IN unset.
    assert attributes["http.method"] == "GET"
    assert attributes["http.route"] == "/hello/{name}"
    assert attributes["http.target"] == "/hello/ann?q=1"
    assert attributes["http.status_code"] == 200
    assert attributes["http.user_agent"] == "probe"
    assert span.status.status_code is StatusCode.UNSET


async def test_incoming_traceparent_continues_the_trace(
    aiohttp_client: AiohttpClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A valid traceparent makes the server span a child of the caller's span."""
    client = await aiohttp_client(make_app(RequestIdMiddleware(tracer_provider=provider)))
    response = await client.get("/hello/bo", headers={"traceparent": TRACEPARENT})
    body = await response.json()
    (span,) = exporter.get_finished_spans()
    assert body["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent is not None
    assert span.parent.span_id == 0x00F067AA0BA902B7


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "garbage",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01x",
    ],
)
async def test_malformed_traceparent_starts_a_new_trace(
    aiohttp_client: AiohttpClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    traceparent: str,
) -> None:
    """An invalid traceparent is ignored: the request gets a new trace of its own."""
    client = await aiohttp_client(make_app(RequestIdMiddleware(tracer_provider=provider)))
    response = await client.get("/hello/x", headers={"traceparent": traceparent})
    assert response.status == 200
    body = await response.json()
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert body["trace_id"] not in {"0" * 32, "4bf92f3577b34da6a3ce929d0e0e4736"}


async def test_ids_without_sdk(aiohttp_client: AiohttpClient, log_lines: LineCollector) -> None:
    """With only the OpenTelemetry API, every request still gets valid, distinct ids."""
    client = await aiohttp_client(make_app(RequestIdMiddleware()))
    bodies = [await (await client.get(f"/hello/{n}")).json() for n in range(20)]
    assert len({b["request_id"] for b in bodies}) == 20
    assert len({b["trace_id"] for b in bodies}) == 20
    for body in bodies:
        assert ID_RE.fullmatch(body["request_id"])
        assert re.fullmatch("[0-9a-f]{32}", body["trace_id"])
        assert body["trace_id"] != "0" * 32
    sampled = {vars(r)["trace_sampled"] for r in log_lines.records if r.name == "tests.app"}
    assert sampled == {False}


async def test_ids_without_sdk_keep_the_callers_trace(aiohttp_client: AiohttpClient) -> None:
    """With only the API, a caller's trace id is kept and the request id is new."""
    client = await aiohttp_client(make_app(RequestIdMiddleware()))
    body = await (await client.get("/hello/a", headers={"traceparent": TRACEPARENT})).json()
    assert body["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert body["request_id"] != request_id_from_span_id(0x00F067AA0BA902B7)


async def test_unsampled_request_is_marked(
    aiohttp_client: AiohttpClient, exporter: InMemorySpanExporter, log_lines: LineCollector
) -> None:
    """An unsampled trace still yields ids; records say it was not sampled."""
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = await aiohttp_client(make_app(RequestIdMiddleware(tracer_provider=provider)))
    response = await client.get("/hello/u")
    body = await response.json()
    assert exporter.get_finished_spans() == ()
    assert ID_RE.fullmatch(body["request_id"])
    assert response.headers["X-Request-ID"] == body["request_id"]
    (record,) = [r for r in log_lines.records if r.name == "tests.app"]
    assert vars(record)["request_id"] == body["request_id"]
    assert vars(record)["trace_sampled"] is False
    assert vars(record)["otelTraceSampled"] is False


async def test_applied_twice_and_in_subapps_works_once(
    aiohttp_client: AiohttpClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Two instances on one app and one on a sub-application make one span, one id."""
    sub = make_app(RequestIdMiddleware(tracer_provider=provider))
    app = make_app(
        RequestIdMiddleware(tracer_provider=provider), RequestIdMiddleware(tracer_provider=provider)
    )
    app.add_subapp("/sub", sub)
    client = await aiohttp_client(app)
    for path in ("/hello/a", "/sub/hello/b"):
        response = await client.get(path)
        body = await response.json()
        assert response.headers.getall("X-Request-ID") == [body["request_id"]]
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    assert [s.name for s in spans] == ["GET /hello/{name}", "GET /sub/hello/{name}"]


async def test_header_name_can_change_or_be_off(
    aiohttp_client: AiohttpClient, provider: TracerProvider
) -> None:
    """The response header's name is configurable, and None sends no header."""
    renamed = await aiohttp_client(
        make_app(RequestIdMiddleware(tracer_provider=provider, header_name="Trace-Ref"))
    )
    response = await renamed.get("/hello/r")
    assert response.headers["Trace-Ref"] == (await response.json())["request_id"]
    assert "X-Request-ID" not in response.headers
    silent = await aiohttp_client(
        make_app(RequestIdMiddleware(tracer_provider=provider, header_name=None))
    )
    response = await silent.get("/hello/s")
    assert "X-Request-ID" not in response.headers
    assert "Trace-Ref" not in response.headers


async def test_request_keys(aiohttp_client: AiohttpClient) -> None:
    """The handler finds the id under REQUEST_ID_KEY."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request[REQUEST_ID_KEY])
        return web.Response(text="ok")

    app = web.Application(middlewares=[RequestIdMiddleware()])
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    response = await client.get("/")
    assert seen == [response.headers["X-Request-ID"]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id_length": 3}, "id_length must be between 4 and 12, got 3"),
        ({"id_length": 13}, "id_length must be between 4 and 12, got 13"),
        ({"max_incoming_id_length": 0}, "max_incoming_id_length must be between 1 and 1024"),
        ({"adopt_incoming_id": True, "header_name": None}, "adopt_incoming_id needs"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, object], message: str) -> None:
    """Options out of range fail at construction, with a message naming the option."""
    with pytest.raises(ValueError, match=re.escape(message)):
        RequestIdMiddleware(**kwargs)  # type: ignore[arg-type]


async def test_id_length_option(aiohttp_client: AiohttpClient) -> None:
    """id_length sets the length of derived ids."""
    client = await aiohttp_client(make_app(RequestIdMiddleware(id_length=12)))
    body = await (await client.get("/hello/l")).json()
    assert re.fullmatch(f"[{ALPHABET}]{{12}}", body["request_id"])


async def test_incoming_id_ignored_by_default(
    aiohttp_client: AiohttpClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A client's X-Request-ID is not adopted unless asked for: the id is the span's."""
    client = await aiohttp_client(make_app(RequestIdMiddleware(tracer_provider=provider)))
    response = await client.get("/hello/i", headers={"X-Request-ID": "client-chosen"})
    (span,) = exporter.get_finished_spans()
    context = span.get_span_context()
    assert context is not None
    assert response.headers["X-Request-ID"] == request_id_from_span_id(context.span_id)
    assert dict(span.attributes or {})["request.id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("incoming", "adopted"),
    [
        ("abc-123.XYZ_9", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("] ERROR [req:admin]", False),
        ("has space", False),
        ("\u00e9t\u00e9", False),
    ],
)
async def test_incoming_id_adopted_only_when_allowed(
    aiohttp_client: AiohttpClient, log_lines: LineCollector, incoming: str, adopted: bool
) -> None:
    """With adoption on, only allowlisted ids are kept; others never reach a log line."""
    client = await aiohttp_client(make_app(RequestIdMiddleware(adopt_incoming_id=True)))
    response = await client.get("/hello/i", headers={"X-Request-ID": incoming})
    body = await response.json()
    if adopted:
        assert body["request_id"] == incoming
    else:
        assert ID_RE.fullmatch(body["request_id"])
        assert not any(incoming in line for line in log_lines.lines)
    assert response.headers["X-Request-ID"] == body["request_id"]


async def crash(request: web.Request) -> web.Response:
    log.info("about to fail")
    raise ZeroDivisionError("boom")


async def answers_of(
    aiohttp_client: AiohttpClient,
    handler: Handler,
    middlewares: Sequence[Middleware],
    *,
    signal: RequestIdMiddleware | None = None,
    path: str = "/",
    headers: dict[str, str] | None = None,
) -> tuple[ClientResponse, str]:
    """Serve ``handler`` behind ``middlewares`` on loopback; return the answer to one GET."""
    app = web.Application(middlewares=list(middlewares))
    app.router.add_get("/", handler)
    if signal is not None:
        app.on_response_prepare.append(signal.on_response_prepare)
    client = await aiohttp_client(app)
    response = await client.get(path, headers=headers)
    return response, await response.text()


def error_lines(collector: LineCollector) -> list[logging.LogRecord]:
    return [r for r in collector.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("accept", ["text/plain", "text/html"])
async def test_unhandled_exception_is_aiohttps_to_answer(
    aiohttp_client: AiohttpClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
    accept: str,
) -> None:
    """aiohttp answers a crash as it does without the library: its 500 page, Connection:
    close and its "Error handling request" line, logged once, carrying the request's ids.
    The span is failed with the exception recorded; the 500 carries the id header."""
    headers = {"Accept": accept}
    bare, bare_body = await answers_of(aiohttp_client, crash, [], headers=headers)
    bare_errors = len(error_lines(log_lines))
    middleware = RequestIdMiddleware(tracer_provider=provider)
    ours, body = await answers_of(
        aiohttp_client, crash, [middleware], signal=middleware, headers=headers
    )

    assert (ours.status, body) == (bare.status, bare_body) == (500, bare_body)
    assert ours.headers["Connection"] == bare.headers["Connection"] == "close"
    assert ours.headers["Content-Type"] == bare.headers["Content-Type"]
    short_id = ours.headers["X-Request-ID"]
    (error,) = error_lines(log_lines)[bare_errors:]
    assert error.name == "aiohttp.server"
    assert error.getMessage() == "Error handling request from 127.0.0.1"
    assert error.exc_info is not None
    assert isinstance(error.exc_info[1], ZeroDivisionError)
    assert vars(error)["request_id"] == short_id
    (span,) = exporter.get_finished_spans()
    assert vars(error)["trace_id"] == format(span.context.trace_id, "032x")
    assert f"[req:{short_id} trace:" in log_lines.lines[log_lines.records.index(error)]
    # As OpenTelemetry's span: the exception left the handler, so no status code is known
    # to the span (aiohttp answers it).
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "Non-integer HTTP status: ZeroDivisionError"
    attributes = dict(span.attributes or {})
    assert "http.status_code" not in attributes
    assert [e.name for e in span.events] == ["exception"]
    assert dict(span.events[0].attributes or {})["exception.type"] == "ZeroDivisionError"


async def test_other_filters_of_aiohttps_logger_see_its_line_once_in_the_request(
    aiohttp_client: AiohttpClient, log_lines: LineCollector
) -> None:
    """aiohttp's error line is handed to its logger's filters and handlers once, with the
    failed request's ids in effect (current_request_id() answers there)."""
    seen: list[tuple[str, str | None]] = []

    class Watching(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            seen.append((record.getMessage(), current_request_id()))
            return True

    server_logger = logging.getLogger("aiohttp.server")
    watching = Watching()
    server_logger.addFilter(watching)
    try:
        response, _ = await answers_of(aiohttp_client, crash, [RequestIdMiddleware()])
    finally:
        server_logger.removeFilter(watching)
    assert response.status == 500
    (hello_record,) = [r for r in log_lines.records if r.name == "tests.app"]
    assert seen == [("Error handling request from 127.0.0.1", vars(hello_record)["request_id"])]
    assert len(error_lines(log_lines)) == 1
    assert current_request_id() is None


async def test_a_server_logger_outside_the_logging_tree_still_gets_the_ids(
    aiohttp_server: AiohttpServer, log_lines: LineCollector
) -> None:
    """A server given a Logger that logging.getLogger() does not know: its error line
    cannot be handed on, and goes out once as it is, with the ids on the record."""
    lines: list[logging.LogRecord] = []
    server_logger = logging.Logger("tests.unregistered")
    server_logger.addHandler(CollectingHandler(lines))
    app = web.Application(middlewares=[RequestIdMiddleware()])
    app.router.add_get("/", crash)
    server = await aiohttp_server(app, logger=server_logger)
    async with ClientSession() as session, session.get(server.make_url("/")) as response:
        assert response.status == 500
    (hello_record,) = [r for r in log_lines.records if r.name == "tests.app"]
    (error,) = lines
    assert error.getMessage() == "Error handling request from 127.0.0.1"
    assert vars(error)["request_id"] == vars(hello_record)["request_id"] != "-"


class CollectingHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_answer_to_a_crash_without_the_signal(
    aiohttp_client: AiohttpClient, log_lines: LineCollector
) -> None:
    """A bare middleware (no on_response_prepare hook) leaves aiohttp's 500 as aiohttp
    makes it; the error line still carries the ids."""
    response, _ = await answers_of(aiohttp_client, crash, [RequestIdMiddleware()])
    assert response.status == 500
    assert "X-Request-ID" not in response.headers
    (error,) = error_lines(log_lines)
    (hello_record,) = [r for r in log_lines.records if r.name == "tests.app"]
    assert vars(error)["request_id"] == vars(hello_record)["request_id"]
    assert ID_RE.fullmatch(vars(error)["request_id"])


async def test_timeout_gets_aiohttps_504(
    aiohttp_client: AiohttpClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
) -> None:
    """asyncio.TimeoutError from the handler is aiohttp's 504 and its error line, as
    without the library; the line has the ids, the 504 the headers (signal hook)."""

    async def too_slow(request: web.Request) -> web.Response:
        await asyncio.wait_for(asyncio.sleep(1), 0.001)
        return web.Response(text="never")

    bare, bare_body = await answers_of(aiohttp_client, too_slow, [])
    (bare_error,) = error_lines(log_lines)
    middleware = RequestIdMiddleware(tracer_provider=provider, traceresponse=True)
    ours, body = await answers_of(aiohttp_client, too_slow, [middleware], signal=middleware)
    assert (ours.status, body) == (bare.status, bare_body)
    assert ours.status == 504
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert "http.status_code" not in attributes  # aiohttp's answer, not the span's
    assert attributes["request.id"] == ours.headers["X-Request-ID"]
    assert ours.headers["traceresponse"].split("-")[1] == format(span.context.trace_id, "032x")
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    # aiohttp's own line for it, once, now with the ids.
    (error,) = error_lines(log_lines)[1:]
    assert error.getMessage() == bare_error.getMessage()
    assert vars(error)["request_id"] == ours.headers["X-Request-ID"]


async def test_outer_middleware_sees_the_original_exception(
    aiohttp_client: AiohttpClient, log_lines: LineCollector
) -> None:
    """An error middleware outside ours gets the very exception the handler raised, and
    logs it with the request's ids; aiohttp then has nothing to log."""
    raised: list[BaseException] = []
    caught: list[BaseException] = []

    async def fails(request: web.Request) -> web.Response:
        error = LookupError("handler's own")
        raised.append(error)
        raise error

    @web.middleware
    async def error_page(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except LookupError as error:
            caught.append(error)
            return web.Response(status=418, text="handled outside")

    response, body = await answers_of(aiohttp_client, fails, [error_page, RequestIdMiddleware()])
    assert (response.status, body) == (418, "handled outside")
    assert caught == raised
    assert caught[0] is raised[0]
    assert caught[0].__traceback__ is not None
    assert not error_lines(log_lines)


async def test_exception_an_outer_middleware_raises_from_ours_keeps_the_ids(
    aiohttp_client: AiohttpClient, log_lines: LineCollector
) -> None:
    """aiohttp's line for an exception raised from the handler's one still has the ids."""

    @web.middleware
    async def wraps_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ZeroDivisionError as error:
            raise RuntimeError("wrapped") from error

    response, _ = await answers_of(aiohttp_client, crash, [wraps_errors, RequestIdMiddleware()])
    assert response.status == 500
    (error,) = error_lines(log_lines)
    (hello_record,) = [r for r in log_lines.records if r.name == "tests.app"]
    assert vars(error)["request_id"] == vars(hello_record)["request_id"] != "-"


@pytest.mark.parametrize("returned", [None, "text"])
async def test_handler_returning_no_response_gets_aiohttps_message(
    aiohttp_client: AiohttpClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
    returned: object,
) -> None:
    """A handler that returns something that is no response gets aiohttp's 500 and its
    message, not an AttributeError from the middleware."""

    async def no_response(request: web.Request) -> web.Response:
        return returned  # type: ignore[return-value]

    bare, bare_body = await answers_of(aiohttp_client, no_response, [])
    bare_messages = [r.getMessage() for r in error_lines(log_lines)]
    del log_lines.records[:]
    ours, body = await answers_of(
        aiohttp_client, no_response, [RequestIdMiddleware(tracer_provider=provider)]
    )
    assert (ours.status, body) == (bare.status, bare_body) == (500, bare_body)
    assert [r.getMessage() for r in error_lines(log_lines)] == bare_messages
    assert len(bare_messages) == 1
    assert "otel_reqid_logging" not in "".join(log_lines.lines)
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {})["http.status_code"] == 500


@pytest.mark.parametrize("returned", [None, "not a response"])
async def test_aiohttps_line_about_no_response_carries_the_ids(
    aiohttp_client: AiohttpClient, log_lines: LineCollector, returned: object
) -> None:
    """aiohttp's line about a handler that returned no response, logged after the
    middleware returned and about no exception of the request, carries its ids once;
    the filter goes on aiohttp's logger for it even when no request has failed before."""

    async def no_response(request: web.Request) -> web.Response:
        return returned  # type: ignore[return-value]

    remove_error_line_filters()
    middleware = RequestIdMiddleware()
    response, _ = await answers_of(aiohttp_client, no_response, [middleware], signal=middleware)
    assert response.status == 500
    short_id = response.headers["X-Request-ID"]
    assert ID_RE.fullmatch(short_id)
    (error,) = error_lines(log_lines)
    assert error.name == "aiohttp.server"
    assert "return" in error.getMessage()
    assert vars(error)["request_id"] == short_id
    assert TRACE_RE.fullmatch(vars(error)["trace_id"])
    assert log_lines.lines[log_lines.records.index(error)].count(f"[req:{short_id} ") == 1


async def test_without_aiohttps_frames_the_line_about_no_response_goes_out_as_is(
    aiohttp_client: AiohttpClient, log_lines: LineCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback where aiohttp's frame that logs it no longer holds the request (another
    aiohttp): its line about a handler that returned no response goes out once, as
    aiohttp wrote it, without the ids."""

    async def no_response(request: web.Request) -> web.Response:
        return None  # type: ignore[return-value]

    monkeypatch.setattr(_error_line, "_AIOHTTP_PROTOCOL", "not.aiohttp")
    response, _ = await answers_of(aiohttp_client, no_response, [RequestIdMiddleware()])
    assert response.status == 500
    (error,) = error_lines(log_lines)
    assert error.getMessage() == "Missing return statement on request handler"
    assert vars(error)["request_id"] == "-"


async def test_nothing_the_library_logs_has_the_query_string(
    aiohttp_client: AiohttpClient, log_lines: LineCollector
) -> None:
    """A failing request's query string (a signed URL's secret) is in no line of ours."""
    response, _ = await answers_of(
        aiohttp_client, crash, [RequestIdMiddleware()], path="/?Signature=s3cr3t"
    )
    assert response.status == 500
    ours = [r for r in log_lines.records if r.name.startswith("otel_reqid_logging")]
    assert not [r for r in ours if "s3cr3t" in r.getMessage()]
    (error,) = error_lines(log_lines)
    assert "s3cr3t" not in log_lines.lines[log_lines.records.index(error)]


async def test_http_exception_passes_through(
    aiohttp_client: AiohttpClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """An HTTPException reaches the client unchanged, with the request id header added."""

    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound(text="no such thing", headers={"X-Extra": "kept"})

    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    app.router.add_get("/missing", missing)
    client = await aiohttp_client(app)
    response = await client.get("/missing")
    assert response.status == 404
    assert await response.text() == "no such thing"
    assert response.headers["X-Extra"] == "kept"
    assert ID_RE.fullmatch(response.headers["X-Request-ID"])
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {})["http.status_code"] == 404


class NotFoundAsInAiohttp4(web.HTTPNotFound):
    """A stand-in for aiohttp 4's HTTPException, which has headers but is no Response.

    aiohttp 3 cannot make an exception that is not a Response, so the Response-only
    attribute the middleware might read fails as it would there.
    """

    @property
    def prepared(self) -> bool:
        raise AttributeError("an HTTPException is not a Response in aiohttp 4")


@pytest.mark.parametrize("exception", [web.HTTPNotFound, NotFoundAsInAiohttp4])
async def test_raised_http_exception_used_only_as_an_exception(
    aiohttp_client: AiohttpClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    exception: type[web.HTTPNotFound],
) -> None:
    """A raised HTTPException gets the header through what it has in aiohttp 3 and 4 alike."""

    async def missing(request: web.Request) -> web.Response:
        raise exception(text="no such thing")

    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    app.router.add_get("/missing", missing)
    client = await aiohttp_client(app)
    response = await client.get("/missing")
    assert response.status == 404
    assert await response.text() == "no such thing"
    assert ID_RE.fullmatch(response.headers["X-Request-ID"])
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {})["http.status_code"] == 404
    assert span.status.status_code is StatusCode.UNSET


# aiohttp 3 warns about it, and aiohttp 4 refuses it; the middleware must not break it meanwhile.
@pytest.mark.filterwarnings("ignore:returning HTTPException object is deprecated")
async def test_returned_http_exception(
    aiohttp_client: AiohttpClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """An HTTPException returned as a response (aiohttp 3 allows it) is sent with the header."""

    async def moved(request: web.Request) -> web.StreamResponse:
        return web.HTTPFound("/elsewhere")

    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    app.router.add_get("/old", moved)
    client = await aiohttp_client(app)
    response = await client.get("/old", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/elsewhere"
    assert ID_RE.fullmatch(response.headers["X-Request-ID"])
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {})["http.status_code"] == 302


async def test_unrouted_path_gets_ids(
    aiohttp_client: AiohttpClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A path no route matches still gets a span named after the method, and the header."""
    client = await aiohttp_client(make_app(RequestIdMiddleware(tracer_provider=provider)))
    response = await client.get("/nowhere")
    assert response.status == 404
    assert ID_RE.fullmatch(response.headers["X-Request-ID"])
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET"


async def test_streaming_and_websocket_keep_ids(
    aiohttp_client: AiohttpClient, log_lines: LineCollector
) -> None:
    """Streaming and WebSocket handlers see their ids for their whole life."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for n in range(3):
            await asyncio.sleep(0.01)
            log.info("chunk %d", n)
            await response.write(f"{current_request_id()}\n".encode())
        await response.write_eof()
        return response

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            log.info("ws got %s", message.data)
            await ws.send_str(f"{current_request_id()} {current_trace_id()}")
        return ws

    app = web.Application(middlewares=[RequestIdMiddleware()])
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", socket)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)

    response = await client.get("/stream")
    chunks = (await response.text()).split()
    assert len(chunks) == 3
    assert len(set(chunks)) == 1
    assert ID_RE.fullmatch(chunks[0])

    async with client.ws_connect("/ws") as ws:
        replies = []
        for word in ("one", "two"):
            await ws.send_str(word)
            message = await ws.receive()
            assert message.type is WSMsgType.TEXT
            replies.append(message.data)
    assert replies[0] == replies[1]
    ws_id = replies[0].split()[0]
    assert ws_id != chunks[0]
    ws_records = [r for r in log_lines.records if r.getMessage().startswith("ws got")]
    assert [vars(r)["request_id"] for r in ws_records] == [ws_id, ws_id]
    chunk_records = [r for r in log_lines.records if r.getMessage().startswith("chunk")]
    assert {vars(r)["request_id"] for r in chunk_records} == {chunks[0]}


async def test_spawned_tasks_inherit_and_context_is_reset(aiohttp_client: AiohttpClient) -> None:
    """Tasks started in a request see its ids; after the request the ContextVars are None."""
    seen: list[tuple[str | None, str | None]] = []
    after: list[str | None] = []

    async def child() -> None:
        await asyncio.sleep(0)
        seen.append((current_request_id(), current_trace_id()))

    async def handler(request: web.Request) -> web.Response:
        await asyncio.gather(asyncio.create_task(child()), asyncio.to_thread(lambda: None))
        await asyncio.create_task(child())
        return web.Response(text=current_request_id() or "")

    async def probe(app: web.Application) -> None:
        after.append(current_request_id())

    app = web.Application(middlewares=[RequestIdMiddleware()])
    app.router.add_get("/", handler)
    app.on_response_prepare.append(lambda request, response: probe(request.app))
    client = await aiohttp_client(app)
    response = await client.get("/")
    short_id = await response.text()
    assert [s[0] for s in seen] == [short_id, short_id]
    assert after == [None]
    assert current_request_id() is None
    assert current_trace_id() is None


async def test_concurrent_requests_never_mix(
    aiohttp_client: AiohttpClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
) -> None:
    """500 concurrent requests: every log line's ids match its response and its span."""

    async def slow(request: web.Request) -> web.Response:
        n = request.match_info["n"]
        log.info("start %s", n)
        await asyncio.sleep(0.001 * (int(n) % 7))
        log.info("end %s", n)
        return web.Response(text=n)

    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    app.router.add_get("/slow/{n}", slow)
    client = await aiohttp_client(app)

    async def call(n: int) -> tuple[int, str]:
        response = await client.get(f"/slow/{n}")
        assert await response.text() == str(n)
        return n, response.headers["X-Request-ID"]

    results = dict(await asyncio.gather(*(call(n) for n in range(500))))
    assert len(set(results.values())) == 500

    spans = {dict(s.attributes or {})["request.id"]: s for s in exporter.get_finished_spans()}
    assert set(spans) == set(results.values())
    line_re = re.compile(r"\[req:(\S+) trace:([0-9a-f]{32})\] (start|end) (\d+)$")
    checked = 0
    for line in log_lines.lines:
        match = line_re.search(line)
        if match is None:
            continue
        short_id, trace_id, _, n = match.groups()
        assert short_id == results[int(n)]
        context = spans[short_id].get_span_context()
        assert context is not None
        assert trace_id == format(context.trace_id, "032x")
        checked += 1
    assert checked == 1000


async def test_exception_after_streaming_started_drops_the_connection(
    aiohttp_client: AiohttpClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
) -> None:
    """A crash after the handler sent its headers: aiohttp logs it (with the ids) and
    drops the connection, as without the library."""

    async def half_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"part one\n")
        raise RuntimeError("mid-stream")

    middleware = RequestIdMiddleware(tracer_provider=provider)
    app = web.Application(middlewares=[middleware])
    app.on_response_prepare.append(middleware.on_response_prepare)
    app.router.add_get("/", half_stream)
    client = await aiohttp_client(app)
    response = await client.get("/")
    assert response.status == 200
    with pytest.raises(ClientPayloadError):
        await response.read()
    (error,) = error_lines(log_lines)
    assert error.name == "aiohttp.server"
    assert vars(error)["request_id"] == response.headers["X-Request-ID"]
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize(
    ("tracestate", "kept"),
    [
        ("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", True),
        ("tenant@vendor=opaque value", True),
        ("] ERROR [req:admin]", False),
        ("congo=a,congo=b", False),
        ("UPPER=case", False),
    ],
)
async def test_tracestate_is_kept_only_when_well_formed(
    aiohttp_client: AiohttpClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
    tracestate: str,
    kept: bool,
) -> None:
    """A well-formed tracestate reaches the span; a malformed one is dropped, unlogged."""
    client = await aiohttp_client(make_app(RequestIdMiddleware(tracer_provider=provider)))
    response = await client.get(
        "/hello/t",
        headers={"traceparent": TRACEPARENT, "tracestate": tracestate, "baggage": tracestate},
    )
    assert response.status == 200
    (span,) = exporter.get_finished_spans()
    context = span.get_span_context()
    assert context is not None
    assert format(context.trace_id, "032x") == TRACEPARENT.split("-")[1]
    assert (len(context.trace_state) > 0) is kept
    assert not any(tracestate in line for line in log_lines.lines)
    assert not [r for r in log_lines.records if r.levelno >= logging.WARNING]


class _RecordOnly(Sampler):
    """Records every span but does not sample it: it is never exported."""

    def should_sample(self, *args: object, **kwargs: object) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


async def test_sampled_means_exported(
    aiohttp_client: AiohttpClient, exporter: InMemorySpanExporter, log_lines: LineCollector
) -> None:
    """trace_sampled says whether the span is exported; otelTraceSampled is the W3C flag."""
    recording = TracerProvider(sampler=_RecordOnly())
    recording.add_span_processor(SimpleSpanProcessor(exporter))
    client = await aiohttp_client(make_app(RequestIdMiddleware(tracer_provider=recording)))
    assert (await client.get("/hello/r")).status == 200
    no_sdk = await aiohttp_client(make_app(RequestIdMiddleware()))
    assert (await no_sdk.get("/hello/n", headers={"traceparent": TRACEPARENT})).status == 200

    assert exporter.get_finished_spans() == ()
    record_only, api_only = [vars(r) for r in log_lines.records if r.name == "tests.app"]
    assert (record_only["trace_sampled"], record_only["otelTraceSampled"]) == (False, False)
    # The caller sampled the trace, but nothing here records it.
    assert (api_only["trace_sampled"], api_only["otelTraceSampled"]) == (False, True)


async def test_a_span_current_at_startup_is_no_requests_span(
    aiohttp_client: AiohttpClient,
) -> None:
    """A non-recording span that was current when the server started is current in every
    request's task too; it must not be taken for each request's span (one id for all)."""
    provider = TracerProvider(sampler=ALWAYS_OFF)
    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app.router.add_get("/", hello)
    with provider.get_tracer("startup").start_as_current_span("startup"):
        client = await aiohttp_client(app)
    ids = set()
    for _ in range(3):
        async with client.get("/") as response:
            ids.add(response.headers["X-Request-ID"])
    assert len(ids) == 3


class _TraceWithoutItsProviderVariable:
    """OpenTelemetry's trace API as a release without ``_TRACER_PROVIDER`` would show it
    to the middleware: every other name is the real module's."""

    def __getattr__(self, name: str) -> object:
        if name == "_TRACER_PROVIDER":
            raise AttributeError(name)
        return getattr(trace_api, name)


async def test_without_opentelemetrys_provider_variable_the_global_provider_is_found(
    aiohttp_client: AiohttpClient, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the private name the middleware reads to skip a lookup, it asks the public
    ``get_tracer_provider()``: ids before a global provider is set, its spans after."""
    monkeypatch.setattr(middleware_module, "trace", _TraceWithoutItsProviderVariable())
    middleware = RequestIdMiddleware()
    before, _ = await answers_of(aiohttp_client, hello, [middleware])
    assert before.status == 200
    assert ID_RE.fullmatch(before.headers["X-Request-ID"])
    assert not exporter.get_finished_spans()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_api.set_tracer_provider(provider)
    after, _ = await answers_of(aiohttp_client, hello, [middleware])
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {})["request.id"] == after.headers["X-Request-ID"]


class _CompositeWithoutItsPropagatorsList(TextMapPropagator):
    """OpenTelemetry's ``CompositePropagator`` of W3C trace-context and baggage as a release
    that no longer keeps its members in ``_propagators`` would show it to the middleware:
    every public method is the real composite's."""

    def __init__(self) -> None:
        self._composite = CompositePropagator(
            [TraceContextTextMapPropagator(), W3CBaggagePropagator()]
        )

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        return self._composite.extract(carrier, context, getter)

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        self._composite.inject(carrier, context, setter)

    @property
    def fields(self) -> set[str]:
        return self._composite.fields


async def test_without_the_composite_propagators_list_the_propagators_run(
    aiohttp_client: AiohttpClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Without the private list that tells a W3C-only global propagator, every request goes
    through the public ``propagate.extract``: a caller's trace is continued, a request
    without its headers gets a trace of its own, and the ids are the span's."""
    stand_in = _CompositeWithoutItsPropagatorsList()
    assert not hasattr(stand_in, "_propagators")
    assert _w3c_headers(stand_in) is None
    before = get_global_textmap()
    set_global_textmap(stand_in)
    try:
        client = await aiohttp_client(make_app(RequestIdMiddleware(tracer_provider=provider)))
        continued = await client.get("/hello/a", headers={"traceparent": TRACEPARENT})
        continued_body = await continued.json()
        fresh = await client.get("/hello/b")
        fresh_body = await fresh.json()
    finally:
        set_global_textmap(before)
    first, second = exporter.get_finished_spans()
    assert continued_body["trace_id"] == TRACEPARENT.split("-")[1]
    assert first.parent is not None
    assert first.parent.span_id == 0x00F067AA0BA902B7
    assert second.parent is None
    for span, response, body in ((first, continued, continued_body), (second, fresh, fresh_body)):
        context = span.get_span_context()
        assert context is not None
        short_id = request_id_from_span_id(context.span_id)
        assert response.headers["X-Request-ID"] == short_id == body["request_id"]
        assert body["trace_id"] == format(context.trace_id, "032x")
    assert fresh_body["trace_id"] != continued_body["trace_id"]
