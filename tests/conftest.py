"""Shared fixtures: a real SDK with an in-memory exporter, and clean logging state."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from otel_reqid_logging import records
from otel_reqid_logging._options import SPANS_FILE_ENV

pytest_plugins = ["tests.tools", "tests.wheels", "tests.markers"]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Leave the record factory, makeRecord, the root logger and our state as they were."""
    factory = logging.getLogRecordFactory()
    make_record = vars(logging.Logger)["makeRecord"]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access = logging.getLogger("aiohttp.access")
    access_filters = list(access.filters)
    server = logging.getLogger("aiohttp.server")
    server_filters = list(server.filters)
    service_name = records.OUTSIDE_REQUEST["otelServiceName"]
    yield
    logging.setLogRecordFactory(factory)
    logging.Logger.makeRecord = make_record  # type: ignore[method-assign]
    records._installed = None
    records._previous_make_record = None
    records._make_record_active = False
    root.handlers[:] = handlers
    root.setLevel(level)
    access.filters[:] = access_filters
    server.filters[:] = server_filters
    records._set_outside("otelServiceName", service_name)


@pytest.fixture(autouse=True)
def _restore_tracer_provider() -> Iterator[None]:
    """Let a test set the global tracer provider, and take it back afterwards."""
    yield
    # The API allows setting the global provider once per process; tests reset that.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


class LineCollector(logging.Handler):
    """Keeps every record, and the line it formats to with the library's LOG_FORMAT."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(records.LOG_FORMAT))
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines() -> LineCollector:
    """Install the record factory and collect every record of every logger at DEBUG."""
    collector = LineCollector()
    root = logging.getLogger()
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    records.install_record_factory()
    return collector


@pytest.fixture
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test in an environment without OTEL_* or span-file settings."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv(SPANS_FILE_ENV, raising=False)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """Collect the spans a test's provider finishes."""
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """A real SDK tracer provider exporting synchronously to ``exporter``."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider
    tracer_provider.shutdown()
