"""client_trace_config: a call from service A to service B carries A's trace (and request id)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.instrumentation.aiohttp_client import (
    AioHttpClientInstrumentor,
    create_trace_config,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pytest_aiohttp import AiohttpServer
from yarl import URL

from otel_reqid_logging import REQUEST_ID_KEY, RequestIdMiddleware, client_trace_config
from tests.conftest import LineCollector

log_a = logging.getLogger("tests.service_a")
log_b = logging.getLogger("tests.service_b")

TraceConfigs = Callable[[], list[aiohttp.TraceConfig]]
TRACE_CONFIGS: web.AppKey[TraceConfigs] = web.AppKey("trace_configs")
TARGET = web.AppKey("target", str)


@dataclass
class Providers:
    """One tracer provider per service, both exporting to one in-memory exporter."""

    a: TracerProvider
    b: TracerProvider
    exporter: InMemorySpanExporter

    def server_span(self, service: str) -> ReadableSpan:
        (span,) = [
            s
            for s in self.exporter.get_finished_spans()
            if s.kind is SpanKind.SERVER and s.resource.attributes["service.name"] == service
        ]
        return span


@pytest.fixture
def providers() -> Iterator[Providers]:
    exporter = InMemorySpanExporter()
    made = []
    for name in ("a", "b"):
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        made.append(provider)
    yield Providers(made[0], made[1], exporter)
    for provider in made:
        provider.shutdown()


async def echo_headers(request: web.Request) -> web.Response:
    """Service B: log a line, and say which propagation headers arrived."""
    log_b.info("b handling")
    return web.json_response(
        {
            "traceparent": request.headers.getall("traceparent", []),
            "x_request_id": request.headers.getall("X-Request-ID", []),
            "request_id": request[REQUEST_ID_KEY],
        }
    )


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPTemporaryRedirect(request.query["to"])


async def call_b(request: web.Request) -> web.Response:
    """Service A: log a line, call B with the configured trace configs, pass B's answer on."""
    log_a.info("a calling b")
    configs = request.app[TRACE_CONFIGS]()
    async with (
        aiohttp.ClientSession(trace_configs=configs) as session,
        session.get(request.app[TARGET]) as response,
    ):
        answer = await response.json()
    return web.json_response({**answer, "a_request_id": request[REQUEST_ID_KEY]})


async def start_b(aiohttp_server: AiohttpServer, provider: TracerProvider, **options: Any) -> str:
    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider, **options)])
    app.router.add_get("/", echo_headers)
    app.router.add_get("/redirect", redirect)
    server = await aiohttp_server(app)
    return str(server.make_url("/"))


async def call_through_a(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    target: str,
    trace_configs: TraceConfigs,
    headers: dict[str, str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Start service A calling ``target``; send it one request; return what B saw."""
    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider, **options)])
    app[TRACE_CONFIGS] = trace_configs
    app[TARGET] = target
    app.router.add_get("/", call_b)
    server = await aiohttp_server(app)
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.make_url("/"), headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        assert answer["a_request_id"] == response.headers["X-Request-ID"]
        return answer


def trace_hex(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


async def test_b_continues_as_trace(
    aiohttp_server: AiohttpServer, providers: Providers, log_lines: LineCollector
) -> None:
    """B's SERVER span is a child of A's, and B's log lines carry A's trace id."""
    b_url = await start_b(aiohttp_server, providers.b)
    seen = await call_through_a(aiohttp_server, providers.a, b_url, lambda: [client_trace_config()])
    span_a, span_b = providers.server_span("a"), providers.server_span("b")
    assert span_a.context is not None
    assert span_b.parent is not None
    assert span_b.parent.span_id == span_a.context.span_id
    assert trace_hex(span_b) == trace_hex(span_a)
    (traceparent,) = seen["traceparent"]
    assert traceparent.split("-")[1:3] == [trace_hex(span_a), f"{span_a.context.span_id:016x}"]

    (line_b,) = [r for r in log_lines.records if r.name == log_b.name]
    (line_a,) = [r for r in log_lines.records if r.name == log_a.name]
    assert vars(line_b)["trace_id"] == vars(line_a)["trace_id"] == trace_hex(span_a)
    # Without propagate_request_id, B keeps an id of its own and gets no request id header.
    assert seen["x_request_id"] == []
    assert vars(line_b)["request_id"] == seen["request_id"] != seen["a_request_id"]


async def test_request_id_travels_when_asked(
    aiohttp_server: AiohttpServer, providers: Providers, log_lines: LineCollector
) -> None:
    """With propagate_request_id, B (adopting incoming ids) logs under A's request id."""
    b_url = await start_b(aiohttp_server, providers.b, adopt_incoming_id=True)
    seen = await call_through_a(
        aiohttp_server,
        providers.a,
        b_url,
        lambda: [client_trace_config(propagate_request_id=True)],
    )
    assert seen["x_request_id"] == [seen["a_request_id"]]
    assert seen["request_id"] == seen["a_request_id"]
    (line_b,) = [r for r in log_lines.records if r.name == log_b.name]
    assert vars(line_b)["request_id"] == seen["a_request_id"]
    assert vars(line_b)["trace_id"] == trace_hex(providers.server_span("a"))


async def test_the_header_follows_otel_reqid_header(
    aiohttp_server: AiohttpServer,
    providers: Providers,
    log_lines: LineCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With OTEL_REQID_HEADER set, the call carries the request id under that name, the
    one the called service reads by the same variable, so it adopts the caller's id
    (the call used to carry X-Request-ID whatever the variable said)."""
    monkeypatch.setenv("OTEL_REQID_HEADER", "X-Correlation-ID")
    b_url = await start_b(aiohttp_server, providers.b, adopt_incoming_id=True)
    seen = await call_through_a(
        aiohttp_server,
        providers.a,
        b_url,
        lambda: [client_trace_config(propagate_request_id=True)],
        header_name="X-Request-ID",
    )
    assert seen["x_request_id"] == []
    assert seen["request_id"] == seen["a_request_id"]


def test_no_response_header_still_names_the_call_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_REQID_HEADER=none turns the response header off, not the config: calls out
    then use X-Request-ID; a wrong variable fails as it does for the middleware."""
    monkeypatch.setenv("OTEL_REQID_HEADER", "none")
    client_trace_config(propagate_request_id=True)
    monkeypatch.setenv("OTEL_REQID_HEADER", "X Bad")
    with pytest.raises(ValueError, match="OTEL_REQID_HEADER must be an HTTP header name"):
        client_trace_config(propagate_request_id=True)


@pytest.mark.parametrize(
    ("hosts", "sent"),
    [
        (["127.0.0.1"], True),
        (["127.0.0.1:{port}"], True),
        (["API.internal", " 127.0.0.1. "], True),
        (["127.0.0.1:1"], False),
        (["localhost"], False),
        (["127.0.0"], False),
        ([], False),
    ],
)
async def test_request_id_only_to_allowed_hosts(
    aiohttp_server: AiohttpServer, providers: Providers, hosts: list[str], sent: bool
) -> None:
    """Hosts match exactly (case and a final dot aside), with any port or the one named.

    The trace context goes to every host.
    """
    b_url = await start_b(aiohttp_server, providers.b)
    port = URL(b_url).port
    allowed = [h.format(port=port) for h in hosts]
    seen = await call_through_a(
        aiohttp_server,
        providers.a,
        b_url,
        lambda: [client_trace_config(propagate_request_id=True, hosts=allowed)],
    )
    assert seen["x_request_id"] == ([seen["a_request_id"]] if sent else [])
    assert len(seen["traceparent"]) == 1


@pytest.mark.parametrize(("target_host", "sent"), [("127.0.0.1", True), ("localhost", False)])
async def test_redirect_to_another_host_drops_the_request_id(
    aiohttp_server: AiohttpServer, providers: Providers, target_host: str, sent: bool
) -> None:
    """A redirect is followed with the request id only if its target is allowed too."""
    b_url = URL(await start_b(aiohttp_server, providers.b))
    target = b_url.with_host(target_host)
    via = b_url.with_path("/redirect").with_query(to=str(target))
    seen = await call_through_a(
        aiohttp_server,
        providers.a,
        str(via),
        lambda: [client_trace_config(propagate_request_id=True, hosts=["127.0.0.1"])],
    )
    assert seen["x_request_id"] == ([seen["a_request_id"]] if sent else [])
    assert len(seen["traceparent"]) == 1


@pytest.mark.parametrize("order", ["instrumented", "otel-first"])
async def test_with_opentelemetrys_client_instrumentation_no_header_twice(
    aiohttp_server: AiohttpServer, providers: Providers, order: str
) -> None:
    """Beside OpenTelemetry's aiohttp-client instrumentation, B sees each header once.

    Its CLIENT span is then B's parent: the trace reads A server, A client, B server.
    """
    b_url = await start_b(aiohttp_server, providers.b)
    instrumentor = AioHttpClientInstrumentor()

    def configs() -> list[aiohttp.TraceConfig]:
        ours = client_trace_config(propagate_request_id=True)
        if order == "instrumented":
            return [ours]  # the instrumentation adds its own after ours
        return [create_trace_config(tracer_provider=providers.a), ours]

    if order == "instrumented":
        instrumentor.instrument(tracer_provider=providers.a)
    try:
        seen = await call_through_a(aiohttp_server, providers.a, b_url, configs)
    finally:
        if order == "instrumented":
            instrumentor.uninstrument()
    span_a, span_b = providers.server_span("a"), providers.server_span("b")
    assert span_a.context is not None
    # (With the instrumentation on, the test's own call to A makes a CLIENT span too.)
    (client_span,) = [
        s
        for s in providers.exporter.get_finished_spans()
        if s.kind is SpanKind.CLIENT and s.parent and s.parent.span_id == span_a.context.span_id
    ]
    assert client_span.context is not None
    assert span_b.parent is not None
    assert span_b.parent.span_id == client_span.context.span_id
    assert len(seen["traceparent"]) == 1
    assert seen["x_request_id"] == [seen["a_request_id"]]


async def test_headers_the_caller_set_stay(
    aiohttp_server: AiohttpServer, providers: Providers
) -> None:
    """A traceparent or request id the calling code set itself is sent as it is, once."""
    b_url = await start_b(aiohttp_server, providers.b)
    own_parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    async def call() -> dict[str, Any]:
        config = client_trace_config(propagate_request_id=True)
        headers = {"traceparent": own_parent, "X-Request-ID": "chosen-by-caller"}
        async with (
            aiohttp.ClientSession(trace_configs=[config]) as session,
            session.get(b_url, headers=headers) as response,
        ):
            answer: dict[str, Any] = await response.json()
            return answer

    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=providers.a)])

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(await call())

    app.router.add_get("/", handler)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/")) as response:
        seen = await response.json()
    assert seen["traceparent"] == [own_parent]
    assert seen["x_request_id"] == ["chosen-by-caller"]


@pytest.mark.parametrize(
    ("incoming", "adopt_incoming_id", "passed_on"),
    [
        ("x' OR 1=1; --\t<script>", False, False),
        ("x' OR 1=1; --\t<script>", True, False),
        ("order-1001.retry_2", False, False),
        ("order-1001.retry_2", True, True),
    ],
)
async def test_an_incoming_id_travels_only_once_adopted(
    aiohttp_server: AiohttpServer,
    providers: Providers,
    incoming: str,
    adopt_incoming_id: bool,
    passed_on: bool,
) -> None:
    """What a client sends A as its request id reaches B only if A adopted it."""
    b_url = await start_b(aiohttp_server, providers.b)
    seen = await call_through_a(
        aiohttp_server,
        providers.a,
        b_url,
        lambda: [client_trace_config(propagate_request_id=True)],
        headers={"X-Request-ID": incoming},
        adopt_incoming_id=adopt_incoming_id,
    )
    assert seen["x_request_id"] == [seen["a_request_id"]]
    assert (seen["a_request_id"] == incoming) is passed_on


async def test_outside_a_request_nothing_is_added(
    aiohttp_server: AiohttpServer, providers: Providers
) -> None:
    """A call made outside any request and span carries no trace and no request id."""
    b_url = await start_b(aiohttp_server, providers.b)
    config = client_trace_config(propagate_request_id=True)
    async with (
        aiohttp.ClientSession(trace_configs=[config]) as session,
        session.get(b_url) as response,
    ):
        seen = await response.json()
    assert seen["traceparent"] == []
    assert seen["x_request_id"] == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"propagate_request_id": True, "hosts": "api.internal"}, TypeError),
        ({"propagate_request_id": True, "hosts": ["api internal"]}, ValueError),
        ({"propagate_request_id": True, "hosts": ["http://api.internal"]}, ValueError),
        ({"propagate_request_id": True, "hosts": ["api.internal:99999"]}, ValueError),
        ({"propagate_request_id": True, "hosts": [""]}, ValueError),
        ({"hosts": ["api.internal"]}, ValueError),
        ({"propagate_request_id": True, "hosts": [5]}, TypeError),
        ({"propagate_request_id": "yes"}, TypeError),
        ({"propagate_request_id": True, "header_name": "X Request Id"}, ValueError),
        ({"propagate_request_id": True, "header_name": "X-Id\r\nCookie: a"}, ValueError),
        ({"propagate_request_id": True, "header_name": ""}, ValueError),
    ],
)
def test_options_that_cannot_mean_anything_are_refused(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """A string for hosts, an entry that is no host, hosts without propagation, a flag that
    is no bool, a header name that is no HTTP token: refused when the config is made."""
    with pytest.raises(error):
        client_trace_config(**kwargs)


@pytest.mark.parametrize(
    ("hosts", "url", "allowed"),
    [
        (["[::1]"], "http://[::1]:8080/", True),
        (["[::1]:8080"], "http://[::1]:8080/", True),
        (["[::1]:8081"], "http://[::1]:8080/", False),
        (["::1"], "http://[::1]/", True),
        (["api.internal:443"], "https://api.internal/", True),
        (["api.internal:80"], "https://api.internal/", False),
        (["internal"], "http://api.internal/", False),
    ],
)
def test_host_matching(hosts: Sequence[str], url: str, allowed: bool) -> None:
    """IPv6 in brackets, default ports, and no suffix matching."""
    from otel_reqid_logging._client import _is_allowed, _parse_hosts  # noqa: PLC0415

    assert _is_allowed(URL(url), _parse_hosts(hosts)) is allowed
