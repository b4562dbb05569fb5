"""OpenTelemetry's log export: every exported record of a request carries the request's span.

In code with the SDK's ``LoggingHandler`` and with the handler of
opentelemetry-instrumentation-logging, under ``opentelemetry-instrument`` with the
handler it attaches itself, and with ``configure_log_export``, as the compose demo runs
it: through the OpenTelemetry Collector to the log store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from opentelemetry.instrumentation.logging.handler import (
    LoggingHandler as InstrumentationLoggingHandler,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pytest_aiohttp import AiohttpServer

from otel_reqid_logging import RequestIdAccessLogger, RequestIdInstrumentor, RequestIdMiddleware
from otel_reqid_logging.lookup._cli import EXIT_FOUND, EXIT_NOT_FOUND, run
from tests.subprocess_app import BIN, run_app_process
from tests.test_zero_code import drive, server_spans
from tests.tools import JaegerServer, OtelCollector

if TYPE_CHECKING:
    from tests.otlp_logs_sink import OtlpLogsSink

shop_log = logging.getLogger("tests.shop")


@pytest.fixture
def log_exporter() -> InMemoryLogRecordExporter:
    """Collect the log records a test's logger provider exports."""
    return InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]


@pytest.fixture(params=["sdk", "instrumentation-logging"])
def otel_log_handler(
    request: pytest.FixtureRequest, log_exporter: InMemoryLogRecordExporter
) -> Iterator[logging.Handler]:
    """OpenTelemetry's logging handler on the root logger, exporting to ``log_exporter``."""
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    handler: logging.Handler
    if request.param == "sdk":
        # Deprecated in favour of the instrumentation's handler, and still widely used.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            handler = LoggingHandler(logger_provider=provider)
    else:
        handler = InstrumentationLoggingHandler(logger_provider=provider)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    provider.shutdown()


async def pay(request: web.Request) -> web.Response:
    cart = request.match_info["cart"]
    shop_log.info("checking out cart %s", cart)
    await asyncio.sleep(0.02)
    shop_log.info("cart %s paid", cart)
    return web.Response(text="ok")


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("payment service unreachable")


def shop_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/checkout/{cart}", pay)
    app.router.add_get("/crash", crash)
    return app


def expected_bodies(path: str) -> list[str]:
    """What the records of one request of ``drive`` say (the access line: a part of it)."""
    if path == "/crash":
        return ["Error handling request from 127.0.0.1", '"GET /crash HTTP/1.1" 500']
    cart = path.rsplit("/", 1)[1]
    return [f"checking out cart {cart}", f"cart {cart} paid", f'"POST {path} HTTP/1.1" 200']


def assert_every_record_has_its_span(
    entries: list[tuple[str, int, int]],
    request_ids: dict[str, str | None],
    spans: dict[str, tuple[int, int]],
) -> None:
    """Check (body, trace id, span id) of exported records against the SERVER spans.

    ``request_ids`` maps each path to its response's request id, ``spans`` each request id
    to the (trace id, span id) of its SERVER span.
    """
    assert set(request_ids.values()) == set(spans)
    for path, request_id in request_ids.items():
        assert request_id is not None
        for expected in expected_bodies(path):
            (entry,) = [e for e in entries if expected in e[0]]
            assert entry[1:] == spans[request_id], (entry, f"{spans[request_id][0]:032x}")


@pytest.mark.parametrize("wiring", ["middleware", "instrument_app"])
async def test_exported_records_carry_the_request_span(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    otel_log_handler: logging.Handler,
    log_exporter: InMemoryLogRecordExporter,
    wiring: str,
) -> None:
    """Handler lines, the traceback line and the access line: all in the request's span.

    The access line is written after the span ended; it still names the span.
    """
    app = shop_app()
    instrumentor = RequestIdInstrumentor()
    if wiring == "middleware":
        middleware = RequestIdMiddleware(tracer_provider=provider)
        app.middlewares.append(middleware)
        # The header on the 500 aiohttp builds for the crash.
        app.on_response_prepare.append(middleware.on_response_prepare)
        server = await aiohttp_server(app, access_log_class=RequestIdAccessLogger)
    else:
        instrumentor.instrument_app(app, tracer_provider=provider)
        server = await aiohttp_server(app)
    try:
        request_ids = await drive(str(server.make_url("")))
    finally:
        if wiring == "instrument_app":
            instrumentor.uninstrument_app(app)

    spans = {}
    for span in exporter.get_finished_spans():
        assert span.attributes is not None
        context = span.get_span_context()
        assert context is not None
        spans[str(span.attributes["request.id"])] = (context.trace_id, context.span_id)
    assert len(spans) == 4
    entries = [
        (
            str(e.log_record.body),
            e.log_record.trace_id or 0,
            e.log_record.span_id or 0,
        )
        for e in log_exporter.get_finished_logs()
    ]
    assert_every_record_has_its_span(entries, request_ids, spans)


def exported_logs(output: list[str]) -> list[tuple[str, int, int]]:
    """Read the log records the OTLP-JSON console exporter printed, one batch a line."""
    entries = []
    for line in output:
        if not line.startswith('{"resourceLogs"'):
            continue
        for resource_logs in json.loads(line)["resourceLogs"]:
            for scope_logs in resource_logs["scopeLogs"]:
                for entry in scope_logs["logRecords"]:
                    entries.append(
                        (
                            str(entry.get("body", {}).get("stringValue", "")),
                            int(entry.get("traceId") or "0", 16),
                            int(entry.get("spanId") or "0", 16),
                        )
                    )
    return entries


@pytest.mark.parametrize(
    "handler_env",
    [
        {"OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true"},
        {},
    ],
    ids=["sdk-handler", "instrumentation-logging-handler"],
)
def test_opentelemetry_instrument_exports_records_with_the_request_span(
    tmp_path: Path, handler_env: dict[str, str]
) -> None:
    """Under the launcher, with the handler it attaches, an unmodified app's records agree.

    With OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true the SDK attaches its handler;
    without it, opentelemetry-instrumentation-logging attaches its own.
    """
    spans_file = tmp_path / "spans.jsonl"
    env = {
        "OTEL_SERVICE_NAME": "shop",
        "OTEL_TRACES_EXPORTER": "otel_reqid_file",
        "OTEL_REQID_SPANS_FILE": str(spans_file),
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "otlp_json_file",
        # Export each record as it is made, so that none waits in a batch at exit.
        "OTEL_BLRP_SCHEDULE_DELAY": "50",
        **handler_env,
    }
    command = [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "examples/plain_app.py"]
    with run_app_process(command, env) as app:
        request_ids = asyncio.run(drive(app.url))

    spans = {}
    for span in server_spans(spans_file):
        request_id = span["attrs"]["request.id"]["stringValue"]
        spans[request_id] = (int(span["traceId"], 16), int(span["spanId"], 16))
    assert len(spans) == 4
    entries = exported_logs(app.output)
    assert entries, "\n".join(app.output)
    assert_every_record_has_its_span(entries, request_ids, spans)


def test_compose_demo_records_reach_the_log_store_through_the_collector(
    otel_collector: OtelCollector,
    logs_backend: OtlpLogsSink,
    jaeger_server: JaegerServer,
    no_otel_environment: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`otel-reqid-logging demo --serve` configured as docker-compose.yml configures it
    (only OTEL_SERVICE_NAME and OTEL_EXPORTER_OTLP_ENDPOINT, the collector's): the records
    of one request, its access line included, reach the log store through the collector's
    logs pipeline, each carrying the request's ids, the same ids as on the demo's own
    lines; and the trace they name is in Jaeger. (The log store is the loopback stand-in
    tests.otlp_logs_sink: what it shows is what the collector passes on to Loki.)"""
    env = {
        "OTEL_SERVICE_NAME": "otel-reqid-demo",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otel_collector.otlp_http_endpoint,
        # Sooner than the default 1 s and 5 s, so the test waits less.
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    demo = f'exec "{BIN / "otel-reqid-logging"}" demo --serve --host 127.0.0.1 --port "$PORT"'
    with run_app_process(["sh", "-c", demo], env) as app:
        url = f"{app.url}/orders/1001"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
            request_id = response.headers["X-Request-ID"]
        access = '"GET /orders/1001 HTTP/1.1" 200'
        # The access line is the request's last record: once it is in, all are.
        logs_backend.wait_for(
            lambda r: r.attributes.get("request_id") == request_id and access in r.body
        )

    received = [r for r in logs_backend.records if r.attributes.get("request_id") == request_id]
    handler_lines = sorted(r.body for r in received if access not in r.body)
    assert handler_lines == [
        "loading order 1001",
        "order 1001 has 3 items",
        "reading order 1001 from the orders table",
    ], received
    assert len(received) == 4, received
    (trace_id,) = {r.trace_id for r in received}
    assert trace_id != "0" * 32
    for record in received:
        assert record.service == "otel-reqid-demo"
        assert record.attributes["trace_id"] == trace_id
        assert record.attributes["requestIdPrefix"] == f"[req:{request_id}] "
        assert record.span_id != "0" * 16
    # The demo's own lines (stderr) show the same ids as the records the store got.
    (line,) = [line for line in app.output if "loading order 1001" in line]
    assert f"[req:{request_id} trace:{trace_id}] loading order 1001" in line, app.output

    # The trace the records name is in Jaeger, through the same collector.
    argv = ["--backend", "jaeger", "--jaeger-url", jaeger_server.query_url]
    argv += ["--service", "otel-reqid-demo", request_id]
    deadline = time.monotonic() + 15
    while (code := run(argv)) == EXIT_NOT_FOUND and time.monotonic() < deadline:
        capsys.readouterr()
        time.sleep(0.3)
    out, err = capsys.readouterr()
    assert code == EXIT_FOUND, err
    assert f"trace {trace_id}  (" in out, out
    assert f"SERVER  request.id={request_id}" in out, out
