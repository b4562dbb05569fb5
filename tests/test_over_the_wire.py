"""Spans and logs over real wires: the repository's collector config run by the
OpenTelemetry Collector -> Jaeger, rotel -> Phoenix, the span file, a dead collector.

The collector-fault tests point the exporter at a loopback port that refuses connections
(collector down) or accepts them and never answers (collector hung), and check what the
application feels: request latency, log lines, and memory (the span queue).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pytest_aiohttp import AiohttpClient

from otel_reqid_logging import RequestIdMiddleware, current_request_id, current_trace_id, records
from otel_reqid_logging._options import SPANS_FILE_ENV
from otel_reqid_logging.export import configure_tracing
from otel_reqid_logging.lookup._cli import EXIT_FOUND, EXIT_NOT_FOUND, run
from tests.otlp_logs_sink import OtlpLogsSink
from tests.subprocess_app import free_port
from tests.tools import (
    JaegerServer,
    OtelCollector,
    PhoenixServer,
    RotelCollector,
    running_rotel,
)

PHOENIX_WAIT_S = 15.0
# The collector config batches for up to 1 s, Jaeger's for 200 ms.
JAEGER_WAIT_S = 15.0


pytestmark = pytest.mark.usefixtures("no_otel_environment")


app_log = logging.getLogger("tests.wire.app")


async def hello(request: web.Request) -> web.Response:
    """Log one line, and answer with the ids the request runs under."""
    app_log.info("hello")
    return web.json_response({"request_id": current_request_id(), "trace_id": current_trace_id()})


def make_app(provider: TracerProvider) -> web.Application:
    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    app.router.add_get("/hello", hello)
    return app


async def phoenix_spans(
    phoenix: PhoenixServer, request_id: str, *, otlp: bool = False
) -> list[dict[str, Any]]:
    """Poll Phoenix's REST API until spans with attribute request.id=`request_id` arrive.

    ``/spans`` answers in Phoenix's own shape: {"data": [{"name", "context": {"trace_id",
    "span_id"}, "span_kind" (OpenInference's, "UNKNOWN" here), "parent_id", "attributes":
    {...}, ...}], "next_cursor"}. ``/spans/otlpv1`` answers in OTLP's shape (snake_case):
    {"data": [{"trace_id", "span_id", "kind": "SPAN_KIND_SERVER", "attributes": [{"key",
    "value": {"string_value", ...}}], ...}], "next_cursor"}.
    """
    url = f"{phoenix.url}/v1/projects/default/spans{'/otlpv1' if otlp else ''}"
    deadline = time.monotonic() + PHOENIX_WAIT_S
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(url, params={"attribute": f"request.id:{request_id}"}) as got:
                assert got.status == 200, await got.text()
                body = await got.json()
            if body["data"]:
                spans: list[dict[str, Any]] = body["data"]
                return spans
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Phoenix has no span with request.id={request_id} after {PHOENIX_WAIT_S} s"
                )
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_spans_reach_phoenix_through_rotel(
    protocol: str,
    rotel_collector: RotelCollector,
    phoenix_server: PhoenixServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A span from configure_tracing travels OTLP -> rotel -> Phoenix with its ids intact."""
    endpoint = (
        rotel_collector.otlp_http_endpoint
        if protocol == "http/protobuf"
        else rotel_collector.otlp_grpc_endpoint
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    provider = configure_tracing(service_name="over-the-wire")
    request_id = f"wire{protocol[:4].replace('/', '')}{time.monotonic_ns() % 10**8}"

    with provider.get_tracer(__name__).start_as_current_span("wire-span") as span:
        span.set_attribute("request.id", request_id)
        context = span.get_span_context()
    await asyncio.to_thread(provider.shutdown)

    (found,) = await phoenix_spans(phoenix_server, request_id)
    assert found["name"] == "wire-span"
    assert found["context"] == {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }
    assert found["attributes"]["request.id"] == request_id


async def test_response_header_finds_the_request_trace_in_phoenix(
    rotel_collector: RotelCollector,
    phoenix_server: PhoenixServer,
    aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The X-Request-ID of a response finds, in Phoenix, the SERVER span of that request's trace."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rotel_collector.otlp_http_endpoint)
    provider = configure_tracing(service_name="over-the-wire-app")
    client = await aiohttp_client(make_app(provider))

    response = await client.get("/hello")
    assert response.status == 200
    seen_by_app = await response.json()
    request_id = response.headers["X-Request-ID"]
    await asyncio.to_thread(provider.shutdown)

    (found,) = await phoenix_spans(phoenix_server, request_id, otlp=True)
    assert seen_by_app["request_id"] == request_id
    assert found["trace_id"] == seen_by_app["trace_id"]
    # Phoenix keeps OpenInference's span kind, not OTLP's: it reports every span as
    # INTERNAL, so the server span shows as the root span named after the route.
    assert found["parent_span_id"] is None
    assert found["name"] == "GET /hello"
    attributes = {a["key"]: a["value"] for a in found["attributes"]}
    assert attributes["request.id"]["string_value"] == request_id
    assert attributes["http.route"]["string_value"] == "/hello"
    assert attributes["http.status_code"]["int_value"] == 200


async def jaeger_lookup(
    jaeger: JaegerServer, service: str, query: str, capsys: pytest.CaptureFixture[str]
) -> str:
    """Run `lookup --backend jaeger` until it finds `query`; return what it printed."""
    deadline = time.monotonic() + JAEGER_WAIT_S
    argv = ["--backend", "jaeger", "--jaeger-url", jaeger.query_url, "--service", service, query]
    while True:
        code = await asyncio.to_thread(run, argv)
        out, err = capsys.readouterr()
        if code == EXIT_FOUND:
            return out
        assert code == EXIT_NOT_FOUND, err
        assert time.monotonic() < deadline, f"not in Jaeger after {JAEGER_WAIT_S} s: {err}"
        await asyncio.sleep(0.3)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_request_trace_reaches_jaeger_through_the_collector(
    protocol: str,
    otel_collector: OtelCollector,
    jaeger_server: JaegerServer,
    aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """App -> the repository's collector config (on the OpenTelemetry Collector) -> Jaeger: the
    response's X-Request-ID finds, with `lookup`, the request's SERVER span."""
    endpoint = (
        otel_collector.otlp_http_endpoint
        if protocol == "http/protobuf"
        else otel_collector.otlp_grpc_endpoint
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    service = f"wire-{protocol[:4].replace('/', '')}-{time.monotonic_ns() % 10**8}"
    provider = configure_tracing(service_name=service)
    client = await aiohttp_client(make_app(provider))

    response = await client.get("/hello")
    seen_by_app = await response.json()
    await asyncio.to_thread(provider.shutdown)

    out = await jaeger_lookup(jaeger_server, service, response.headers["X-Request-ID"], capsys)
    assert f"trace {seen_by_app['trace_id']}  (1 span, service {service})" in out
    assert f"SERVER  request.id={seen_by_app['request_id']}" in out
    assert "http.route=/hello" in out


async def test_request_log_records_reach_the_log_store_through_the_collector(
    otel_collector: OtelCollector,
    logs_backend: OtlpLogsSink,
    aiohttp_client: AiohttpClient,
) -> None:
    """OpenTelemetry's LoggingHandler with the OTLP exporter: a handler line of a request
    travels app -> the collector's logs pipeline -> the log store, carrying the request's
    trace id, span id and request id. (The log store is a loopback stand-in,
    tests.otlp_logs_sink: no log store runs here, and what it shows is what the collector
    passes on.)"""
    service = f"wire-logs-{time.monotonic_ns() % 10**8}"
    records.install_record_factory()
    logger_provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPLogExporter(endpoint=f"{otel_collector.otlp_http_endpoint}/v1/logs")
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=logger_provider)
    kept = _Records()
    for each in (handler, kept):
        app_log.addHandler(each)
    app_log.setLevel(logging.INFO)
    provider = configure_tracing(exporter=InMemorySpanExporter())
    client = await aiohttp_client(make_app(provider))
    try:
        response = await client.get("/hello")
        seen_by_app = await response.json()
    finally:
        for each in (handler, kept):
            app_log.removeHandler(each)
        await asyncio.to_thread(logger_provider.shutdown)
        await asyncio.to_thread(provider.shutdown)

    (line,) = await asyncio.to_thread(logs_backend.wait_for, lambda r: r.service == service)
    (record,) = kept.records
    assert line.body == "hello"
    assert line.severity == "INFO"
    assert line.trace_id == seen_by_app["trace_id"]
    assert line.span_id == record.__dict__["span_id"] != "0" * 16
    assert line.attributes["request_id"] == seen_by_app["request_id"]
    assert line.attributes["request_id"] == response.headers["X-Request-ID"]


async def test_default_span_file_holds_the_request(
    tmp_path: Path, aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no endpoint, one request leaves one OTLP JSON line carrying its request id."""
    spans_file = tmp_path / "spans.jsonl"
    monkeypatch.setenv(SPANS_FILE_ENV, str(spans_file))
    provider = configure_tracing(service_name="file-default")
    client = await aiohttp_client(make_app(provider))

    response = await client.get("/hello")
    request_id = response.headers["X-Request-ID"]
    trace_id = (await response.json())["trace_id"]
    await asyncio.to_thread(provider.shutdown)

    (line,) = spans_file.read_text().splitlines()
    assert request_id in line
    (otlp_span,) = json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert otlp_span["traceId"] == trace_id
    assert otlp_span["kind"] == 2, otlp_span["kind"]  # SPAN_KIND_SERVER
    assert {"key": "request.id", "value": {"stringValue": request_id}} in otlp_span["attributes"]


class _Records(logging.Handler):
    """Keeps the records the OpenTelemetry loggers let through."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def otel_log() -> Iterator[_Records]:
    """Collect every record of the `opentelemetry` loggers during the test."""
    # The SDK's own DuplicateFilter drops a message equal to the one before it within
    # the same 20 s, so an earlier test's "Queue full" would hide this test's: forget it.
    for log_filter in logging.getLogger("opentelemetry.sdk._shared_internal").filters:
        if hasattr(log_filter, "last_log"):
            del log_filter.last_log
    handler = _Records()
    logger = logging.getLogger("opentelemetry")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def refused_endpoint() -> Iterator[str]:
    """An OTLP endpoint whose port is bound but not listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def blackholed_endpoint() -> Iterator[str]:
    """An OTLP endpoint that completes TCP handshakes (kernel backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _requests(client: Any, seconds: float, *, pause: float = 0.0) -> list[tuple[float, str]]:
    """Send requests one after another for `seconds`; return (latency, request id) pairs.

    ``pause`` spaces them out, so that a trace store can ingest the spans as they come.
    """
    done = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        async with client.get("/hello") as response:
            assert response.status == 200
            await response.read()
        done.append((time.perf_counter() - started, response.headers["X-Request-ID"]))
        await asyncio.sleep(pause)
    return done


FAULT_LOGGERS = {
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.sdk._shared_internal",
}


@pytest.mark.parametrize(
    ("fault", "export_timeout", "batch_size", "queue_size", "shows"),
    [
        # Refused: each export fails within milliseconds, so failures come as fast as
        # batches of 8 do, and without a limit so would error lines.
        ("refused_endpoint", 0.5, 8, 64, "similar messages suppressed"),
        # Blackholed: each export hangs for the whole timeout while requests keep ending
        # spans, so the queue fills up: a queue of 16 does within each hang even on a
        # busy machine. One batch holds the whole queue, which bounds the flush at
        # shutdown to one timeout.
        ("blackholed_endpoint", 1.0, 16, 16, "Queue full, dropping Span."),
    ],
)
async def test_faulty_collector_costs_requests_nothing(
    *,
    fault: str,
    export_timeout: float,
    batch_size: int,
    queue_size: int,
    shows: str,
    request: pytest.FixtureRequest,
    aiohttp_client: AiohttpClient,
    otel_log: _Records,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the collector refusing or hung: no added latency, few log lines, a capped queue."""
    batching: dict[str, Any] = {
        "max_queue_size": queue_size,
        "max_export_batch_size": batch_size,
        "schedule_delay_millis": 10,
    }
    baseline_provider = configure_tracing(exporter=InMemorySpanExporter(), **batching)
    baseline_client = await aiohttp_client(make_app(baseline_provider))
    baseline = [latency for latency, _ in await _requests(baseline_client, 0.5)]
    await asyncio.to_thread(baseline_provider.shutdown)

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", request.getfixturevalue(fault))
    interval = 0.5
    provider = configure_tracing(
        export_timeout=export_timeout, error_log_interval=interval, **batching
    )
    client = await aiohttp_client(make_app(provider))
    app_lines = _Records()
    app_log.addHandler(app_lines)
    app_log.setLevel(logging.INFO)
    started = time.monotonic()
    try:
        faulty = [latency for latency, _ in await _requests(client, 2.0)]
        await asyncio.to_thread(provider.shutdown)
    finally:
        app_log.removeHandler(app_lines)
    elapsed = time.monotonic() - started

    # Every application line is written, one per request, whatever the exporter does.
    assert len(app_lines.records) == len(faulty)

    # Latency: an export blocks its thread for up to export_timeout, once per batch; if
    # requests waited on it, one in every batch_size or more would take that long, and the
    # 99th percentile would show it. Measured here: median ~0.5 ms with or without the
    # fault, 99th percentile 5-26 ms, worst ~0.1 s (a scheduling hiccup).
    assert len(faulty) > 200, "too few requests for a 99th percentile"
    p99 = statistics.quantiles(faulty, n=100)[98]
    assert p99 < export_timeout / 2, (p99, max(faulty), len(faulty))
    assert statistics.median(faulty) < 2 * statistics.median(baseline) + 0.005

    # Log lines: at most 2 per logger per interval, shutdown included.
    windows = int(elapsed / interval) + 1
    per_logger: dict[str, int] = {}
    for record in otel_log.records:
        per_logger[record.name] = per_logger.get(record.name, 0) + 1
    assert set(per_logger) <= FAULT_LOGGERS, per_logger
    assert all(count <= 2 * windows for count in per_logger.values()), (per_logger, windows)

    # Refused: the limiter did drop lines. Blackholed: the SDK dropped spans beyond
    # max_queue_size instead of holding them all.
    messages = [record.getMessage() for record in otel_log.records]
    assert any(shows in message for message in messages), messages


async def test_collector_restarted_mid_run(
    aiohttp_client: AiohttpClient,
    phoenix_server: PhoenixServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A collector that stops and comes back on its port: requests go on, export resumes.

    Spans ended while it is down may be lost (the SDK retries, then drops); the spans
    after its return reach the trace store, and no application line is lost.
    """
    port = free_port()
    export_timeout = 1.0
    with running_rotel(phoenix_server.otlp_http_endpoint, tmp_path, http_port=port) as rotel:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.otlp_http_endpoint)
        provider = configure_tracing(
            service_name="restart",
            export_timeout=export_timeout,
            schedule_delay_millis=50,
            max_queue_size=1024,
            max_export_batch_size=128,
        )
        client = await aiohttp_client(make_app(provider))
        app_lines = _Records()
        app_log.addHandler(app_lines)
        app_log.setLevel(logging.INFO)
        before = await _requests(client, 1.0, pause=0.01)
        await asyncio.to_thread(provider.force_flush)
        found_before = await phoenix_spans(phoenix_server, before[-1][1])
    try:
        during = await _requests(client, 1.5, pause=0.01)
        with running_rotel(phoenix_server.otlp_http_endpoint, tmp_path, http_port=port):
            after = await _requests(client, 1.5, pause=0.01)
            await asyncio.to_thread(provider.force_flush)
            found_after = await phoenix_spans(phoenix_server, after[-1][1])
    finally:
        app_log.removeHandler(app_lines)
        await asyncio.to_thread(provider.shutdown)

    assert found_before[0]["attributes"]["request.id"] == before[-1][1]
    assert found_after[0]["attributes"]["request.id"] == after[-1][1]
    every = before + during + after
    assert len(app_lines.records) == len(every)
    assert len({request_id for _, request_id in every}) == len(every)
    # Requests never wait for the exporter: those that did would take an export timeout.
    p99 = statistics.quantiles([latency for latency, _ in during], n=100)[98]
    assert p99 < export_timeout / 2, p99
