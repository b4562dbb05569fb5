"""configure_log_export: log records over OTLP, chosen by the standard OTEL_* variables."""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from typing import TYPE_CHECKING

import pytest
from opentelemetry.sdk._logs import LoggingHandler as SdkLoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

from otel_reqid_logging import records
from otel_reqid_logging._extras import MissingExtraError
from otel_reqid_logging.export import (
    _LogExportSettings,
    _read_log_export_settings,
    configure_log_export,
)
from tests.tools import OtelCollector

if TYPE_CHECKING:
    from tests.otlp_logs_sink import OtlpLogsSink

pytestmark = pytest.mark.usefixtures("no_otel_environment")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, _LogExportSettings("none", "http/protobuf")),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            _LogExportSettings("otlp", "http/protobuf"),
        ),
        (
            {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://c:4318/v1/logs"},
            _LogExportSettings("otlp", "http/protobuf"),
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_LOGS_EXPORTER": "none"},
            _LogExportSettings("none", "http/protobuf"),
        ),
        ({"OTEL_LOGS_EXPORTER": "otlp"}, _LogExportSettings("otlp", "http/protobuf")),
        ({"OTEL_LOGS_EXPORTER": "OTLP_PROTO_GRPC,console"}, _LogExportSettings("otlp", "grpc")),
        (
            {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            _LogExportSettings("otlp", "grpc"),
        ),
        (
            {
                "OTEL_LOGS_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
            },
            _LogExportSettings("otlp", "http/protobuf"),
        ),
    ],
)
def test_settings_follow_the_otel_variables(
    environ: dict[str, str], expected: _LogExportSettings
) -> None:
    """Unset, records go out only when an OTLP endpoint is configured; the logs' own
    protocol variable wins over the general one; the exporter packages' names pick one."""
    assert _read_log_export_settings(environ) == expected


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"OTEL_LOGS_EXPORTER": "loki"}, "OTEL_LOGS_EXPORTER='loki'"),
        (
            {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"},
            "OTEL_EXPORTER_OTLP_PROTOCOL='thrift'",
        ),
        (
            {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "udp"},
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL='udp'",
        ),
    ],
)
def test_unsupported_settings_name_their_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ValueError, match=variable):
        _read_log_export_settings(environ)


def test_nothing_configured_attaches_nothing() -> None:
    """With no OTEL_* variable set, no provider is made and the root logger is untouched."""
    root = logging.getLogger()
    before = list(root.handlers)

    assert configure_log_export() is None
    assert root.handlers == before


def test_records_of_the_logger_are_exported_but_not_opentelemetrys_own() -> None:
    """The app's records go out with the library's ids as attributes; OpenTelemetry's own
    records (an exporter's failure, say) stay out; shutdown detaches the handler."""
    records.install_record_factory()
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    root = logging.getLogger()
    root_level = root.level
    root.setLevel(logging.INFO)
    export = configure_log_export(service_name="log-export", exporter=exporter)
    assert export is not None
    try:
        assert export.handler in root.handlers
        logging.getLogger("tests.log_export.app").info("order %s paid", 7)
        logging.getLogger("opentelemetry.exporter.otlp.proto.http._log_exporter").warning(
            "Failed to export logs batch"
        )
        logging.getLogger("opentelemetry").warning("also OpenTelemetry's")
    finally:
        export.shutdown()
        root.setLevel(root_level)

    assert export.handler not in root.handlers
    (exported,) = exporter.get_finished_logs()
    assert exported.log_record.body == "order 7 paid"
    attributes = dict(exported.log_record.attributes or {})
    assert attributes["request_id"] == "-"  # outside a request, as the factory writes it
    assert attributes["requestIdPrefix"] == ""
    assert exported.resource.attributes["service.name"] == "log-export"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_records_reach_the_log_store_through_the_collector(
    protocol: str,
    otel_collector: OtelCollector,
    logs_backend: OtlpLogsSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From the OTEL_* variables alone, over either protocol: app -> the OpenTelemetry
    Collector's logs pipeline -> the log store (the loopback stand-in of
    tests.otlp_logs_sink)."""
    endpoint = (
        otel_collector.otlp_http_endpoint
        if protocol == "http/protobuf"
        else otel_collector.otlp_grpc_endpoint
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    service = f"log-export-{protocol[:4].replace('/', '')}-{time.monotonic_ns() % 10**8}"
    app_log = logging.getLogger("tests.log_export.wire")
    app_log.setLevel(logging.INFO)
    export = configure_log_export(service_name=service, logger=app_log)
    assert export is not None
    try:
        app_log.warning("stock low for %s", "sku-1")
    finally:
        export.shutdown()

    (seen,) = logs_backend.wait_for(lambda r: r.service == service)
    assert seen.body == "stock low for sku-1"
    assert seen.severity == "WARN"


def test_without_instrumentation_logging_the_sdks_handler_exports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where opentelemetry-instrumentation-logging is not installed (the demo's image has
    the `export` extra only), the SDK's own handler does the same work, with no warning."""
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.logging.handler", None)
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    app_log = logging.getLogger("tests.log_export.sdk_handler")
    app_log.setLevel(logging.INFO)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        export = configure_log_export(exporter=exporter, logger=app_log)
    assert export is not None
    try:
        app_log.info("shipped")
    finally:
        export.shutdown()

    assert type(export.handler) is SdkLoggingHandler
    assert [e.log_record.body for e in exporter.get_finished_logs()] == ["shipped"]


def test_without_the_sdks_private_logs_module_log_export_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK publishes its logs part only as ``opentelemetry.sdk._logs``; a release
    without it (here: the import fails) makes log export, and log export alone, fail with
    the one-line error that names the missing module. Nothing is attached."""
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk._logs", None)
    app_log = logging.getLogger("tests.log_export.no_sdk_logs")
    with pytest.raises(MissingExtraError, match=r"opentelemetry\.sdk\._logs is missing"):
        configure_log_export(exporter=InMemoryLogRecordExporter(), logger=app_log)  # type: ignore[no-untyped-call]
    assert app_log.handlers == []


@pytest.mark.parametrize(
    ("protocol", "module"),
    [
        ("http/protobuf", "opentelemetry.exporter.otlp.proto.http._log_exporter"),
        ("grpc", "opentelemetry.exporter.otlp.proto.grpc._log_exporter"),
    ],
)
def test_without_the_otlp_private_log_exporter_module_log_export_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, protocol: str, module: str
) -> None:
    """The OTLP log exporters are published only in ``_log_exporter`` modules; a release
    without them (here: the import fails) makes OTLP log export fail with the one-line
    error naming the missing module. Nothing is attached."""
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", protocol)
    monkeypatch.setitem(sys.modules, module, None)
    app_log = logging.getLogger("tests.log_export.no_log_exporter")
    with pytest.raises(MissingExtraError, match=f"{re.escape(module)} is missing"):
        configure_log_export(logger=app_log)
    assert app_log.handlers == []
