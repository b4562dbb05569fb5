"""Our own SERVER span and metrics match OpenTelemetry's aiohttp-server instrumentation.

The same requests go to two real servers: one with OpenTelemetry's instrumentation, one
with this library's middleware starting its own span, in each semantic-convention mode
(``OTEL_SEMCONV_STABILITY_OPT_IN`` unset: the old conventions; ``http``; ``http/dup``)
and with captured request and response headers. Each side has its own real SDK tracer
provider (in-memory exporter) and meter provider (in-memory reader); spans and metric
points are compared attribute by attribute. The deliberate differences
(docs/performance.md, "Parity") are spelled out here, so that any other difference fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.web_app import Application as AiohttpApplication
from opentelemetry import metrics
from opentelemetry.instrumentation import aiohttp_server as otel_aiohttp_server
from opentelemetry.instrumentation._semconv import _OpenTelemetrySemanticConventionStability
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

from otel_reqid_logging import RequestIdMiddleware
from otel_reqid_logging import _metrics as metrics_module
from otel_reqid_logging._metrics import DURATION_BUCKETS
from otel_reqid_logging._semconv import Mode, opt_in_mode

# OpenTelemetry's instrumentation subclasses web.Application, which aiohttp discourages
# with a DeprecationWarning; that warning is theirs, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class _InstrumentedApplication:DeprecationWarning"
)

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
# The same authority on both sides, so that the server address and port agree.
HOST = "shop.example:8080"
# What only our span carries: the request id.
OUR_EXTRAS = {"request.id"}
SCHEMA = {
    Mode.OLD: "https://opentelemetry.io/schemas/1.11.0",
    Mode.STABLE: "https://opentelemetry.io/schemas/1.21.0",
    Mode.DUP: "https://opentelemetry.io/schemas/1.21.0",
}
DURATIONS = {
    Mode.OLD: {"http.server.duration"},
    Mode.STABLE: {"http.server.request.duration"},
    Mode.DUP: {"http.server.duration", "http.server.request.duration"},
}
# Request headers captured (one of them sanitized), and response headers.
CAPTURE = {
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "X-Custom-.*,Cookie,Absent",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": "X-Answer,content-type",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": ".*cookie.*",
}
SENT_HEADERS = {"X-Custom-One": "a", "x-custom-two": "b, c", "Cookie": "session=secret"}


class Side:
    """One instrumented server: its spans and its metrics."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def metrics(self) -> dict[str, Metric]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: metric
            for resource_metrics in data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        }


async def ok(request: web.Request) -> web.Response:
    return web.Response(text=f"user {request.match_info['user_id']}\n", headers={"X-Answer": "42"})


async def crash(request: web.Request) -> web.Response:
    raise ValueError("the handler broke")


async def unavailable(request: web.Request) -> web.Response:
    raise web.HTTPServiceUnavailable()


async def forbidden(request: web.Request) -> web.Response:
    raise web.HTTPForbidden()


def add_routes(app: web.Application) -> web.Application:
    app.router.add_get("/users/{user_id}", ok)
    app.router.add_get("/crash", crash)
    app.router.add_get("/unavailable", unavailable)
    app.router.add_get("/forbidden", forbidden)
    return app


@pytest.fixture(params=[Mode.OLD, Mode.STABLE, Mode.DUP], ids=lambda mode: mode.value)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Mode:
    """Put OpenTelemetry's instrumentations (and so ours) in one mode for this test."""
    chosen: Mode = request.param
    if chosen is Mode.OLD:
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    else:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", chosen.value)
    for name, value in CAPTURE.items():
        monkeypatch.setenv(name, value)
    # OpenTelemetry reads the variable once per process; make it read it again.
    stability = _OpenTelemetrySemanticConventionStability
    monkeypatch.setattr(stability, "_initialized", False)
    monkeypatch.setattr(stability, "_OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING", {})
    # Instrumented earlier in this process in another mode, it would keep recording
    # that mode's histograms (and count on that mode's meter): it sets them but never
    # clears them.
    for name in ("duration_histogram_old", "duration_histogram_new", "meter_old", "meter_new"):
        monkeypatch.setattr(otel_aiohttp_server, name, None)
    return chosen


@pytest.fixture
def otel_side(mode: Mode) -> Iterator[Side]:
    """OpenTelemetry's instrumentation; its meters come from the global meter provider."""
    side = Side()
    metrics.set_meter_provider(side.meter_provider)
    instrumentor = AioHttpServerInstrumentor()
    instrumentor.instrument(tracer_provider=side.tracer_provider)
    assert opt_in_mode() is mode
    yield side
    instrumentor.uninstrument()
    metrics._internal._METER_PROVIDER_SET_ONCE = Once()
    metrics._internal._METER_PROVIDER = None
    side.tracer_provider.shutdown()
    side.meter_provider.shutdown()


@pytest.fixture
def our_side() -> Iterator[Side]:
    """This library's middleware starting its own span, with explicit providers."""
    side = Side()
    yield side
    side.tracer_provider.shutdown()
    side.meter_provider.shutdown()


REQUESTS = [
    ("GET", "/users/42"),
    ("GET", "/users/7?page=2&sig=secret"),
    ("POST", "/users/42"),  # no POST route: 405
    ("GET", "/nowhere"),  # no route at all: 404
    ("GET", "/forbidden"),
    ("GET", "/unavailable"),
    ("PURGE", "/users/42"),  # a method the conventions do not know
    ("GET", "/crash"),
]


async def send_all(client: TestClient[Any, Any]) -> list[int]:
    statuses = []
    for method, path in REQUESTS:
        headers = {"Host": HOST, **SENT_HEADERS}
        async with client.request(method, path, headers=headers) as response:
            await response.read()
            statuses.append(response.status)
    return statuses


async def run_both(
    aiohttp_client: AiohttpClient, otel_side: Side, our_side: Side
) -> tuple[list[int], list[int]]:
    # web.Application is OpenTelemetry's subclass while its instrumentor is on; ours is
    # built on aiohttp's own class, so that only our middleware traces it.
    otel_app = add_routes(web.Application())
    our_app = add_routes(
        AiohttpApplication(
            middlewares=[
                RequestIdMiddleware(
                    tracer_provider=our_side.tracer_provider,
                    meter_provider=our_side.meter_provider,
                )
            ]
        )
    )
    otel_statuses = await send_all(await aiohttp_client(otel_app))
    our_statuses = await send_all(await aiohttp_client(our_app))
    return otel_statuses, our_statuses


def by_request(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    assert len(spans) == len(REQUESTS)
    return spans  # one span per request, ended in request order (one at a time)


def exception_events(span: ReadableSpan) -> list[tuple[str, Any, Any]]:
    return [
        (event.name, event.attributes["exception.type"], event.attributes["exception.message"])
        for event in span.events
        if event.name == "exception" and event.attributes is not None
    ]


async def test_spans_match_attribute_by_attribute(
    aiohttp_client: AiohttpClient, mode: Mode, otel_side: Side, our_side: Side
) -> None:
    """Name, kind, attributes, status and exception events agree, request by request."""
    otel_statuses, our_statuses = await run_both(aiohttp_client, otel_side, our_side)
    assert otel_statuses == our_statuses == [200, 200, 405, 404, 403, 503, 405, 500]
    pairs = zip(by_request(otel_side.spans()), by_request(our_side.spans()), strict=True)
    for (method, path), (theirs, ours) in zip(REQUESTS, pairs, strict=True):
        where = f"{method} {path}"
        assert ours.kind is theirs.kind is SpanKind.SERVER, where
        assert ours.name == theirs.name, where
        their_attributes = dict(theirs.attributes or {})
        our_attributes = dict(ours.attributes or {})
        assert set(our_attributes) >= OUR_EXTRAS, where
        for name in OUR_EXTRAS:
            del our_attributes[name]
        if their_attributes.get("http.route") == "":
            # Deliberate: no route matched, so ours has no http.route (the conventions
            # ask for it only when there is one); theirs records an empty string.
            del their_attributes["http.route"]
        assert our_attributes == their_attributes, where
        assert ours.status.status_code is theirs.status.status_code, where
        assert ours.status.description == theirs.status.description, where
        assert exception_events(ours) == exception_events(theirs), where
        assert ours.instrumentation_scope is not None
        assert ours.instrumentation_scope.name == "otel_reqid_logging"
        assert ours.instrumentation_scope.schema_url == SCHEMA[mode], where

    # The pairs above would also agree if both missed something: pin the essentials.
    spans = our_side.spans()
    first = dict(spans[0].attributes or {})
    assert spans[0].name == "GET /users/{user_id}"
    assert first["http.route"] == "/users/{user_id}"
    assert first["http.request.header.x_custom_one"] == ("a",)
    assert first["http.request.header.x_custom_two"] == ("b, c",)
    assert first["http.request.header.cookie"] == ("[REDACTED]",)
    assert "http.request.header.absent" not in first
    assert first["http.response.header.x_answer"] == ("42",)
    assert first["http.response.header.content_type"] == ("text/plain; charset=utf-8",)
    # aiohttp answers a 404 by raising it: no response headers, on either side.
    assert not any(name.startswith("http.response.header.") for name in spans[3].attributes or {})
    purge = dict(spans[6].attributes or {})
    assert spans[6].name == "HTTP"
    assert spans[5].status.status_code is StatusCode.ERROR
    assert exception_events(spans[5]) == [
        ("exception", "aiohttp.web_exceptions.HTTPServiceUnavailable", "Service Unavailable")
    ]
    assert spans[4].status.status_code is StatusCode.UNSET
    assert [e[1] for e in exception_events(spans[7])] == ["ValueError"]
    assert spans[7].status.description == "Non-integer HTTP status: ValueError"
    if mode is not Mode.STABLE:
        assert first["http.method"] == "GET"
        assert first["http.status_code"] == 200
        assert (first["net.host.name"], first["net.host.port"]) == ("shop.example", 8080)
        assert first["http.server_name"] == HOST
        assert first["http.url"] == "http://shop.example:8080/users/42"
        signed = dict(spans[1].attributes or {})
        assert signed["http.target"] == "/users/7?page=2&sig=REDACTED"
        assert signed["http.url"] == "http://shop.example:8080/users/7?page=2&sig=REDACTED"
        assert purge["http.method"] == "_OTHER"
    if mode is not Mode.OLD:
        assert first["http.request.method"] == "GET"
        assert (first["server.address"], first["server.port"]) == ("shop.example", 8080)
        assert first["url.path"] == "/users/42"
        assert first["http.response.status_code"] == 200
        assert dict(spans[1].attributes or {})["url.query"] == "page=2&sig=REDACTED"
        assert purge["http.request.method"] == "_OTHER"
        assert purge["http.request.method_original"] == "PURGE"
        assert dict(spans[7].attributes or {})["error.type"] == "ValueError"
    else:
        assert not any(name.startswith(("url.", "server.", "error.")) for name in first)


def points(metric: Metric) -> dict[frozenset[tuple[str, Any]], Any]:
    return {frozenset((point.attributes or {}).items()): point for point in metric.data.data_points}


def schema_urls(side: Side) -> dict[str, str]:
    data = side.reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: scope_metrics.schema_url
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    }


async def test_metrics_match_point_by_point(
    aiohttp_client: AiohttpClient, mode: Mode, otel_side: Side, our_side: Side
) -> None:
    """The same instruments, units, buckets, schemas and attribute sets, with the same counts."""
    await run_both(aiohttp_client, otel_side, our_side)
    theirs, ours = otel_side.metrics(), our_side.metrics()
    assert set(ours) == set(theirs) == DURATIONS[mode] | {"http.server.active_requests"}
    assert schema_urls(our_side) == schema_urls(otel_side)
    for name in theirs:
        assert ours[name].unit == theirs[name].unit, name
        assert ours[name].description == theirs[name].description, name

    for name in DURATIONS[mode]:
        their_durations = points(theirs[name])
        our_durations = points(ours[name])
        unmatched = {key: p for key, p in their_durations.items() if ("http.route", "") in key}
        for key, point in unmatched.items():
            # Deliberate: no http.route when no route matched (see the span test).
            del their_durations[key]
            their_durations[key - {("http.route", "")}] = point
        assert set(our_durations) == set(their_durations), name
        for key, point in our_durations.items():
            assert isinstance(point, HistogramDataPoint)
            assert point.count == their_durations[key].count, key
            assert point.explicit_bounds == their_durations[key].explicit_bounds, key
            if name == "http.server.request.duration":
                assert tuple(point.explicit_bounds) == tuple(float(b) for b in DURATION_BUCKETS)
                assert 0 < point.sum < 10, key
            else:
                assert isinstance(point.sum, int), key  # whole milliseconds, as theirs
                assert 0 <= point.sum < 10_000, key

    their_active = points(theirs["http.server.active_requests"])
    our_active = points(ours["http.server.active_requests"])
    assert {key: point.value for key, point in our_active.items()} == {
        key: point.value for key, point in their_active.items()
    }
    assert all(point.value == 0 for point in our_active.values())  # none left running
    assert len(our_active) == 3  # GET, POST, _OTHER


async def test_suppressed_requests_get_ids_but_no_span_or_metrics(
    aiohttp_client: AiohttpClient, our_side: Side
) -> None:
    """Inside suppress_http_instrumentation() ours records nothing, as theirs; ids remain."""
    app = add_routes(
        AiohttpApplication(
            middlewares=[
                RequestIdMiddleware(
                    tracer_provider=our_side.tracer_provider,
                    meter_provider=our_side.meter_provider,
                )
            ]
        )
    )
    # The server's tasks inherit the context it was started in, as in their suite.
    with suppress_http_instrumentation():
        client = await aiohttp_client(app)
    async with client.get("/users/1") as response:
        assert response.status == 200
        assert response.headers["X-Request-ID"]
    assert our_side.spans() == []
    data = our_side.reader.get_metrics_data()
    assert data is None or not [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for point in metric.data.data_points
        if getattr(point, "count", 0) or getattr(point, "value", 0)
    ]


async def test_no_meter_provider_records_nothing(aiohttp_client: AiohttpClient) -> None:
    """Without a meter provider (explicit or global) the middleware makes no instruments."""
    app = web.Application(middlewares=[RequestIdMiddleware()])
    middleware = app.middlewares[0]
    assert isinstance(middleware, RequestIdMiddleware)
    client = await aiohttp_client(add_routes(app))
    async with client.get("/users/1") as response:
        assert response.status == 200
    assert middleware._spans.metrics() is None


async def test_global_meter_provider_set_later_is_used(
    aiohttp_client: AiohttpClient, mode: Mode
) -> None:
    """A global meter provider set after the middleware was made is found and used."""
    app = add_routes(web.Application(middlewares=[RequestIdMiddleware()]))
    client = await aiohttp_client(app)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(provider)
    try:
        async with client.get("/users/1") as response:
            assert response.status == 200
        data = reader.get_metrics_data()
        assert data is not None
        scopes = data.resource_metrics[0].scope_metrics
        assert {scope.scope.name for scope in scopes} == {"otel_reqid_logging"}
        names = {metric.name for scope in scopes for metric in scope.metrics}
        assert names == DURATIONS[mode] | {"http.server.active_requests"}
    finally:
        metrics._internal._METER_PROVIDER_SET_ONCE = Once()
        metrics._internal._METER_PROVIDER = None
        provider.shutdown()


class _MetricsWithoutItsProviderVariable:
    """OpenTelemetry's metrics API as a release without ``_internal._METER_PROVIDER`` would
    show it to the library: every other name is the real module's."""

    def __getattr__(self, name: str) -> object:
        if name == "_internal":
            raise AttributeError(name)
        return getattr(metrics, name)


async def test_without_opentelemetrys_meter_provider_variable_the_global_provider_is_found(
    aiohttp_client: AiohttpClient, mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the private name read to tell whether a global meter provider is set, the
    library asks the public ``get_meter_provider()``: nothing recorded before one is set,
    its instruments after."""
    monkeypatch.setattr(metrics_module, "otel_metrics", _MetricsWithoutItsProviderVariable())
    assert not metrics_module._global_provider_set()
    app = add_routes(web.Application(middlewares=[RequestIdMiddleware()]))
    middleware = app.middlewares[0]
    assert isinstance(middleware, RequestIdMiddleware)
    client = await aiohttp_client(app)
    async with client.get("/users/1") as response:
        assert response.status == 200
    assert middleware._spans.metrics() is None
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(provider)
    try:
        assert metrics_module._global_provider_set()
        async with client.get("/users/1") as response:
            assert response.status == 200
        data = reader.get_metrics_data()
        assert data is not None
        scopes = data.resource_metrics[0].scope_metrics
        names = {metric.name for scope in scopes for metric in scope.metrics}
        assert names == DURATIONS[mode] | {"http.server.active_requests"}
    finally:
        metrics._internal._METER_PROVIDER_SET_ONCE = Once()
        metrics._internal._METER_PROVIDER = None
        provider.shutdown()


async def test_active_requests_counts_a_request_in_flight(
    aiohttp_client: AiohttpClient, mode: Mode
) -> None:
    """While a request runs, http.server.active_requests reads 1 for its attributes."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    seen: list[dict[frozenset[tuple[str, Any]], Any]] = []

    async def peek(request: web.Request) -> web.Response:
        metric = our_active_metric(reader)
        seen.append({key: point.value for key, point in points(metric).items()})
        return web.Response(text="ok")

    app = web.Application(middlewares=[RequestIdMiddleware(meter_provider=provider)])
    app.router.add_post("/peek", peek)
    client = await aiohttp_client(app)
    try:
        async with client.post("/peek") as response:
            assert response.status == 200
        (key,) = seen[0]
        assert seen == [{key: 1}]
        method = {name: value for name, value in key if name.endswith("method")}
        old, new = {"http.method": "POST"}, {"http.request.method": "POST"}
        assert method == {Mode.OLD: old, Mode.STABLE: new, Mode.DUP: old | new}[mode]
        after = points(our_active_metric(reader))
        assert after[key].value == 0
    finally:
        provider.shutdown()


def our_active_metric(reader: InMemoryMetricReader) -> Metric:
    data = reader.get_metrics_data()
    assert data is not None
    (metric,) = [
        m
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "http.server.active_requests"
    ]
    return metric
