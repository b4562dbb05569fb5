"""traceresponse: the W3C Level 2 response header of the request's SERVER span, CORS-exposed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiohttp import ClientResponse, ClientSession, web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind
from pytest_aiohttp import AiohttpServer

from otel_reqid_logging import RequestIdInstrumentor, RequestIdMiddleware, request_id_from_span_id

CORS = {"Access-Control-Allow-Origin": "https://app.example"}


async def plain(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def cors(request: web.Request) -> web.Response:
    return web.Response(text="ok", headers=CORS)


async def cors_listed(request: web.Request) -> web.Response:
    headers = CIMultiDict(CORS)
    headers.add("Access-Control-Expose-Headers", "X-Custom, TraceResponse")
    headers.add("Access-Control-Expose-Headers", "X-Other")
    return web.Response(text="ok", headers=headers)


async def cors_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers=CORS)
    await response.prepare(request)
    await response.write(b"streamed")
    return response


async def cors_forbidden(request: web.Request) -> web.Response:
    raise web.HTTPForbidden(headers=CORS)


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("boom")


async def own_header(request: web.Request) -> web.Response:
    return web.Response(text="ok", headers={"traceresponse": "00-from-the-handler-01"})


def routes(app: web.Application) -> web.Application:
    for path, handler in {
        "/": plain,
        "/cors": cors,
        "/cors-listed": cors_listed,
        "/cors-stream": cors_stream,
        "/cors-forbidden": cors_forbidden,
        "/crash": crash,
        "/own": own_header,
    }.items():
        app.router.add_get(path, handler)
    return app


async def fetch(server: TestServer, path: str, **kwargs: object) -> ClientResponse:
    async with ClientSession() as session:
        response = await session.get(server.make_url(path), **kwargs)  # type: ignore[arg-type]
        await response.read()
        response.release()
        return response


def expected(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


def exposed(response: ClientResponse) -> list[str]:
    lines = response.headers.getall("Access-Control-Expose-Headers", [])
    return [item.strip() for line in lines for item in line.split(",")]


@pytest.fixture
def instrumentor() -> Iterator[RequestIdInstrumentor]:
    instance = RequestIdInstrumentor()
    yield instance
    if instance.is_instrumented_by_opentelemetry:
        instance.uninstrument()


async def test_header_names_the_server_span(
    aiohttp_server: AiohttpServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """traceresponse is 00-trace-span-flags of the SERVER span the request id comes from."""
    middleware = RequestIdMiddleware(tracer_provider=provider, traceresponse=True)
    server = await aiohttp_server(routes(web.Application(middlewares=[middleware])))
    response = await fetch(server, "/")
    (span,) = server_spans(exporter)
    assert response.headers["traceresponse"] == expected(span)
    # The sampled bit, and whatever else the SDK sets (its "random trace id" bit).
    assert int(response.headers["traceresponse"].rsplit("-", 1)[1], 16) & 1
    context = span.get_span_context()
    assert context is not None
    assert response.headers["X-Request-ID"] == request_id_from_span_id(context.span_id)
    # A browser cannot read it cross-origin unless listed; a same-origin response
    # gets no CORS header it did not ask for.
    assert "Access-Control-Expose-Headers" not in response.headers


async def test_off_by_default(aiohttp_server: AiohttpServer, provider: TracerProvider) -> None:
    """Without the option the response has no traceresponse header."""
    middleware = RequestIdMiddleware(tracer_provider=provider)
    server = await aiohttp_server(routes(web.Application(middlewares=[middleware])))
    response = await fetch(server, "/")
    assert "traceresponse" not in response.headers
    assert "X-Request-ID" in response.headers


async def test_unsampled_request_says_so(
    aiohttp_server: AiohttpServer, exporter: InMemorySpanExporter
) -> None:
    """A request the sampler drops gets flags 00, continuing the caller's trace id."""
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    middleware = RequestIdMiddleware(tracer_provider=provider, traceresponse=True)
    server = await aiohttp_server(routes(web.Application(middlewares=[middleware])))
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    response = await fetch(server, "/", headers={"traceparent": caller})
    version, trace_id, span_id, flags = response.headers["traceresponse"].split("-")
    assert (version, trace_id, flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "00")
    assert span_id != "00f067aa0ba902b7"
    assert request_id_from_span_id(int(span_id, 16)) == response.headers["X-Request-ID"]
    assert exporter.get_finished_spans() == ()


async def test_cors_responses_expose_both_headers(
    aiohttp_server: AiohttpServer, provider: TracerProvider
) -> None:
    """With Access-Control-Allow-Origin, both headers are exposed, merged into the list."""
    middleware = RequestIdMiddleware(tracer_provider=provider, traceresponse=True)
    server = await aiohttp_server(routes(web.Application(middlewares=[middleware])))

    response = await fetch(server, "/cors")
    assert exposed(response) == ["X-Request-ID", "traceresponse"]

    # Names already listed (in any case) stay once; several header lines become one.
    response = await fetch(server, "/cors-listed")
    assert exposed(response) == ["X-Custom", "TraceResponse", "X-Other", "X-Request-ID"]

    forbidden = await fetch(server, "/cors-forbidden")
    assert forbidden.status == 403
    assert forbidden.headers["traceresponse"].startswith("00-")
    assert exposed(forbidden) == ["X-Request-ID", "traceresponse"]

    # aiohttp's own 500 gets the headers through the on_response_prepare hook.
    assert "traceresponse" not in (await fetch(server, "/crash")).headers
    hooked = web.Application(middlewares=[middleware])
    hooked.on_response_prepare.append(middleware.on_response_prepare)
    hooked_server = await aiohttp_server(routes(hooked))
    crashed = await fetch(hooked_server, "/crash")
    assert crashed.status == 500
    assert crashed.headers["traceresponse"].startswith("00-")
    assert crashed.headers["traceresponse"].split("-")[1] != "0" * 32


async def test_request_id_header_exposed_without_traceresponse(
    aiohttp_server: AiohttpServer,
) -> None:
    """The request id header alone is exposed on CORS responses; none with no header at all."""
    app = routes(web.Application(middlewares=[RequestIdMiddleware()]))
    server = await aiohttp_server(app)
    assert exposed(await fetch(server, "/cors")) == ["X-Request-ID"]

    silent = routes(web.Application(middlewares=[RequestIdMiddleware(header_name=None)]))
    response = await fetch(await aiohttp_server(silent), "/cors")
    assert "Access-Control-Expose-Headers" not in response.headers


async def test_handler_value_is_kept(
    aiohttp_server: AiohttpServer, provider: TracerProvider
) -> None:
    """A traceresponse the handler set itself (a proxied one, say) is not overwritten."""
    middleware = RequestIdMiddleware(tracer_provider=provider, traceresponse=True)
    server = await aiohttp_server(routes(web.Application(middlewares=[middleware])))
    response = await fetch(server, "/own")
    assert response.headers.getall("traceresponse") == ["00-from-the-handler-01"]


async def test_streamed_response_through_instrument_app(
    instrumentor: RequestIdInstrumentor,
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """A response the handler prepares itself gets both headers from on_response_prepare."""
    app = routes(web.Application())
    instrumentor.instrument_app(app, tracer_provider=provider, traceresponse=True)
    try:
        server = await aiohttp_server(app)
        response = await fetch(server, "/cors-stream")
    finally:
        instrumentor.uninstrument_app(app)
    (span,) = server_spans(exporter)
    assert response.headers["traceresponse"] == expected(span)
    assert exposed(response) == ["X-Request-ID", "traceresponse"]


@pytest.mark.filterwarnings("ignore:Inheritance class _InstrumentedApplication:DeprecationWarning")
async def test_beside_otel_aiohttp_server_it_names_that_span(
    instrumentor: RequestIdInstrumentor,
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With OpenTelemetry's aiohttp-server span, the header names that span (set by env)."""
    monkeypatch.setenv("OTEL_REQID_TRACERESPONSE", "true")
    otel_server = AioHttpServerInstrumentor()
    otel_server.instrument(tracer_provider=provider)
    try:
        instrumentor.instrument(tracer_provider=provider)
        server = await aiohttp_server(routes(web.Application()))
        response = await fetch(server, "/")
    finally:
        otel_server.uninstrument()
    (span,) = server_spans(exporter)
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "opentelemetry.instrumentation.aiohttp_server"
    assert response.headers["traceresponse"] == expected(span)
