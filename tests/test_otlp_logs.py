"""OpenTelemetry's log export: every exported record of a request carries the request's span.

In code with the SDK's ``LoggingHandler`` and with the handler of
opentelemetry-instrumentation-logging, and under ``opentelemetry-instrument`` with the
handler it attaches itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

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
from tests.subprocess_app import BIN, run_app_process
from tests.test_zero_code import drive, server_spans

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
