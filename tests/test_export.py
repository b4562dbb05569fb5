"""configure_tracing: exporter choice from OTEL_* variables, the span file, sampling, log limits."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

from otel_reqid_logging import export as export_module
from otel_reqid_logging._options import DEFAULT_SPANS_FILE, SPANS_FILE_ENV
from otel_reqid_logging.export import (
    _EXPORT_LOGGERS,
    _ExportLogLimiter,
    _ExportSettings,
    _read_export_settings,
    configure_tracing,
)
from otel_reqid_logging.file_exporter import SpansFileExporter

pytestmark = pytest.mark.usefixtures("no_otel_environment")

# Where the SDK's batch processor logs a full queue and a failed export (a private module).
_SDK_EXPORT_LOGGER = "opentelemetry.sdk._shared_internal"


@pytest.fixture
def shutdown_after() -> Iterator[list[TracerProvider]]:
    """Shut down every provider a test appends, so no batch thread outlives it."""
    providers: list[TracerProvider] = []
    yield providers
    for provider in providers:
        provider.shutdown()


def _exporter_of(provider: TracerProvider) -> SpanExporter:
    # The SDK keeps its processors privately; the batch processor exposes its exporter.
    processors = provider._active_span_processor._span_processors
    batch = [p for p in processors if isinstance(p, BatchSpanProcessor)]
    assert len(batch) == 1, processors
    exporter: SpanExporter = batch[0].span_exporter
    return exporter


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, _ExportSettings("otel_reqid_file", "http/protobuf", DEFAULT_SPANS_FILE)),
        (
            {SPANS_FILE_ENV: "/var/log/app/spans.jsonl"},
            _ExportSettings("otel_reqid_file", "http/protobuf", "/var/log/app/spans.jsonl"),
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
            _ExportSettings("otlp", "http/protobuf", DEFAULT_SPANS_FILE),
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp_proto_grpc"},
            _ExportSettings("otlp", "grpc", DEFAULT_SPANS_FILE),
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp_proto_http", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            _ExportSettings("otlp", "http/protobuf", DEFAULT_SPANS_FILE),
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"},
            _ExportSettings("otlp", "http/protobuf", DEFAULT_SPANS_FILE),
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            _ExportSettings("otlp", "grpc", DEFAULT_SPANS_FILE),
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, _ExportSettings("otlp", "http/protobuf", "spans.jsonl")),
        (
            {"OTEL_TRACES_EXPORTER": "None", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            _ExportSettings("none", "http/protobuf", DEFAULT_SPANS_FILE),
        ),
    ],
)
def test_settings_follow_the_standard_variables(
    environ: dict[str, str], expected: _ExportSettings
) -> None:
    """An OTLP endpoint selects OTLP, the signal-specific protocol wins, else the span file."""
    assert _read_export_settings(environ) == expected


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
    ],
)
def test_unsupported_values_are_refused_by_name(environ: dict[str, str], named: str) -> None:
    """A value we cannot honour raises an error naming the variable, not a silent fallback."""
    with pytest.raises(ValueError, match=named):
        _read_export_settings(environ)


def test_default_writes_otlp_json_lines_to_the_span_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no endpoint, spans land as OTLP JSON lines in OTEL_REQID_SPANS_FILE."""
    spans_file = tmp_path / "spans.jsonl"
    monkeypatch.setenv(SPANS_FILE_ENV, str(spans_file))
    provider = configure_tracing(service_name="export-test")

    with provider.get_tracer(__name__).start_as_current_span("work") as span:
        span.set_attribute("request.id", "k3v9q2xd")
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()

    lines = spans_file.read_text().splitlines()
    assert len(lines) == 1
    resource_spans = json.loads(lines[0])["resourceSpans"]
    resource_attributes = {
        a["key"]: a["value"] for a in resource_spans[0]["resource"]["attributes"]
    }
    assert resource_attributes["service.name"] == {"stringValue": "export-test"}
    (otlp_span,) = resource_spans[0]["scopeSpans"][0]["spans"]
    assert otlp_span["traceId"] == trace_id
    assert {"key": "request.id", "value": {"stringValue": "k3v9q2xd"}} in otlp_span["attributes"]


@pytest.mark.parametrize(
    ("protocol", "exporter_class"),
    [("http/protobuf", HttpSpanExporter), ("grpc", GrpcSpanExporter)],
)
def test_endpoint_selects_the_otlp_exporter_of_the_protocol(
    protocol: str,
    exporter_class: type[SpanExporter],
    monkeypatch: pytest.MonkeyPatch,
    shutdown_after: list[TracerProvider],
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT picks OTLP, over HTTP or gRPC as the protocol says."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    provider = configure_tracing()
    shutdown_after.append(provider)

    assert type(_exporter_of(provider)) is exporter_class


def test_missing_grpc_extra_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Asking for gRPC without its exporter installed names the `grpc` extra."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    # A None entry in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)

    with pytest.raises(ImportError, match=r"otel-reqid-logging\[grpc\]"):
        configure_tracing()


def test_service_name_argument_overrides_the_environment(
    monkeypatch: pytest.MonkeyPatch, shutdown_after: list[TracerProvider]
) -> None:
    """OTEL_SERVICE_NAME names the service unless the caller passes service_name."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    from_env = configure_tracing(exporter=InMemorySpanExporter())
    from_argument = configure_tracing(service_name="from-arg", exporter=InMemorySpanExporter())
    shutdown_after += [from_env, from_argument]

    assert from_env.resource.attributes["service.name"] == "from-env"
    assert from_argument.resource.attributes["service.name"] == "from-arg"


def test_sampler_comes_from_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch, shutdown_after: list[TracerProvider]
) -> None:
    """OTEL_TRACES_SAMPLER(_ARG) reach the provider; unsampled spans are never exported."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    ratio = configure_tracing(exporter=InMemorySpanExporter())
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    exporter = InMemorySpanExporter()
    off = configure_tracing(exporter=exporter)
    shutdown_after += [ratio, off]

    assert isinstance(ratio.sampler, ParentBased)
    assert isinstance(ratio.sampler._root, TraceIdRatioBased)
    assert ratio.sampler._root.rate == 0.25
    assert off.sampler is ALWAYS_OFF
    off.get_tracer(__name__).start_span("dropped").end()
    off.force_flush()
    assert exporter.get_finished_spans() == ()


def test_given_exporter_receives_batched_spans(shutdown_after: list[TracerProvider]) -> None:
    """An exporter passed in gets the spans through a batch processor, not synchronously."""
    exporter = InMemorySpanExporter()
    provider = configure_tracing(exporter=exporter, schedule_delay_millis=60_000)
    shutdown_after.append(provider)

    provider.get_tracer(__name__).start_span("batched").end()
    assert exporter.get_finished_spans() == ()  # still queued: nothing blocks on export
    provider.force_flush()

    assert [span.name for span in exporter.get_finished_spans()] == ["batched"]


class _HeldExporter(SpanExporter):
    """An exporter whose first export waits until released: a collector that hangs."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.taken = threading.Event()
        self.names: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.taken.set()
        self.release.wait(timeout=30)
        self.names.extend(span.name for span in spans)
        return SpanExportResult.SUCCESS


def test_a_full_queue_drops_the_oldest_spans(
    shutdown_after: list[TracerProvider], caplog: pytest.LogCaptureFixture
) -> None:
    """What the docs say: with the export stuck, a full queue keeps the newest spans and
    drops the oldest waiting ones (the SDK's deque, appended on one side, bounded)."""
    exporter = _HeldExporter()
    provider = configure_tracing(
        exporter=exporter, max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=60_000
    )
    shutdown_after.append(provider)
    tracer = provider.get_tracer(__name__)
    for n in range(2):
        tracer.start_span(f"s{n}").end()
    assert exporter.taken.wait(timeout=10)  # s0 and s1 are in the stuck export
    for n in range(2, 12):
        tracer.start_span(f"s{n}").end()
    exporter.release.set()
    provider.force_flush()

    assert exporter.names == ["s0", "s1", "s8", "s9", "s10", "s11"]
    assert "Queue full, dropping Span." in caplog.text
    # The logger named by its private module is one the export limit watches.
    full = {r.name for r in caplog.records if r.getMessage() == "Queue full, dropping Span."}
    assert full == {_SDK_EXPORT_LOGGER}
    assert _SDK_EXPORT_LOGGER in _EXPORT_LOGGERS


def test_without_the_sdks_private_logger_its_lines_go_out_unlimited(
    shutdown_after: list[TracerProvider],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An SDK that reports a full queue under another logger than ``_shared_internal``
    (here: the limit no longer watches that logger) gets no limit on those lines; they and
    the spans go out as without the library."""
    monkeypatch.setattr(
        export_module,
        "_EXPORT_LOGGERS",
        tuple(name for name in _EXPORT_LOGGERS if name != _SDK_EXPORT_LOGGER),
    )
    exporter = _HeldExporter()
    provider = configure_tracing(
        exporter=exporter, max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=60_000
    )
    shutdown_after.append(provider)
    watched = logging.getLogger(_SDK_EXPORT_LOGGER).filters
    assert not [f for f in watched if isinstance(f, _ExportLogLimiter)]
    # The SDK's own DuplicateFilter drops a message equal to the one before it within
    # 20 s, so an earlier test's "Queue full" would hide this test's: forget it.
    for log_filter in watched:
        if hasattr(log_filter, "last_log"):
            del log_filter.last_log
    tracer = provider.get_tracer(__name__)
    for n in range(2):
        tracer.start_span(f"s{n}").end()
    assert exporter.taken.wait(timeout=10)
    for n in range(2, 12):
        tracer.start_span(f"s{n}").end()
    exporter.release.set()
    provider.force_flush()

    assert exporter.names == ["s0", "s1", "s8", "s9", "s10", "s11"]
    assert "Queue full, dropping Span." in caplog.text


def test_no_exporter_when_traces_exporter_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_TRACES_EXPORTER=none builds a provider that still makes ids but exports nothing."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    provider = configure_tracing()

    with provider.get_tracer(__name__).start_as_current_span("local") as span:
        assert span.get_span_context().is_valid
    assert provider._active_span_processor._span_processors == ()
    provider.shutdown()


def test_set_global_installs_the_provider(shutdown_after: list[TracerProvider]) -> None:
    """set_global=True makes the new provider the one trace.get_tracer_provider() returns."""
    provider = configure_tracing(exporter=InMemorySpanExporter(), set_global=True)
    shutdown_after.append(provider)

    assert trace.get_tracer_provider() is provider


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_log_limiter_passes_a_burst_then_counts_what_it_dropped() -> None:
    """Per logger, `burst` lines pass per interval; the next line says how many were dropped."""
    logger = logging.getLogger("tests.export.limiter")
    logger.propagate = False
    handler = _Collect()
    logger.addHandler(handler)
    limiter = _ExportLogLimiter(interval=0.2, burst=2)
    logger.addFilter(limiter)
    try:
        for attempt in range(50):
            logger.error("Failed to export batch %d", attempt)
        time.sleep(0.25)
        logger.error("Failed to export batch %d", 50)
    finally:
        logger.removeFilter(limiter)
        logger.removeHandler(handler)
        logger.propagate = True

    assert handler.messages == [
        "Failed to export batch 0",
        "Failed to export batch 1",
        "Failed to export batch 50 (48 similar messages suppressed)",
    ]


def test_log_limiter_lives_as_long_as_the_provider() -> None:
    """configure_tracing limits the export loggers, and shutdown takes the limit away again."""
    provider = configure_tracing(exporter=InMemorySpanExporter(), error_log_interval=30.0)

    def limiters() -> list[list[_ExportLogLimiter]]:
        return [
            [f for f in logging.getLogger(name).filters if isinstance(f, _ExportLogLimiter)]
            for name in _EXPORT_LOGGERS
        ]

    attached = limiters()
    provider.shutdown()

    assert all(len(found) == 1 for found in attached), attached
    assert limiters() == [[] for _ in _EXPORT_LOGGERS]


def test_import_has_no_side_effects() -> None:
    """Importing the module loads neither the SDK nor an exporter (they are optional)."""
    code = (
        "import sys, otel_reqid_logging.export\n"
        "print([m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.exporter'))])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert result.stdout.strip() == "[]"


def test_zero_code_path_reaches_the_file_exporter(tmp_path: Path) -> None:
    """`opentelemetry-instrument --traces_exporter otel_reqid_file` writes the span file.

    The official `otlp_json_file` entry point, created without arguments, would write to
    stdout; ours takes its path from OTEL_REQID_SPANS_FILE.
    """
    (found,) = entry_points(group="opentelemetry_traces_exporter", name="otel_reqid_file")
    assert found.load() is SpansFileExporter

    code = "from opentelemetry import trace\ntrace.get_tracer('zero').start_span('zero-code').end()"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    spans_path = tmp_path / "zero.jsonl"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "opentelemetry-instrument"),
            "--traces_exporter",
            "otel_reqid_file",
            "--metrics_exporter",
            "none",
            "--logs_exporter",
            "none",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={**environ, SPANS_FILE_ENV: str(spans_path)},
    )

    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stdout.splitlines() if line.startswith("{")]
    (line,) = spans_path.read_text().splitlines()
    spans = json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert [span["name"] for span in spans] == ["zero-code"]
