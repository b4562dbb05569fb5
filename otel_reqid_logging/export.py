"""A tracer provider whose spans go to a collector (OTLP) or, by default, to a local file;
and, when asked for, log records that go to the collector too.

One call, :func:`configure_tracing`, builds an SDK ``TracerProvider`` from the standard
``OTEL_*`` environment variables:

- ``OTEL_TRACES_EXPORTER``: ``otlp``, ``otel_reqid_file`` (or its alias ``otlp_json_file``),
  ``console`` or ``none``. Unset, it means ``otlp`` when an OTLP endpoint is configured and
  the local file otherwise.
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` and
  ``OTEL_EXPORTER_OTLP_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``
  (``http/protobuf``, the default, or ``grpc``).
- ``OTEL_REQID_SPANS_FILE``: where the local file exporter appends OTLP JSON lines (read
  through ``_options.spans_file``, with the library's other ``OTEL_REQID_*`` variables).

:func:`_read_export_settings` reads the exporter choice above and nothing else; the
SDK itself reads the rest (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER[_ARG]``, ``OTEL_BSP_*``, the OTLP headers, timeout and compression).
The SDK and the local file exporter come with the ``sdk`` extra, the OTLP exporters with
``export`` and ``grpc``; each is imported only when used, and a missing one fails with a
line naming its extra.

Another, :func:`configure_log_export`, sends the records of a logger (the root logger by
default), with the ids this library puts on them, over OTLP as ``OTEL_LOGS_EXPORTER``
(``otlp`` or ``none``; unset, ``otlp`` when an OTLP endpoint is configured) and
``OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT`` / ``_PROTOCOL`` say.
"""

# The exporters are imported where they are chosen: the OTLP ones are optional extras.
# ruff: noqa: PLC0415

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from ._extras import MissingExtraError
from ._options import spans_file

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExporter
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler

__all__ = ["LogExport", "configure_log_export", "configure_tracing"]

ExporterName = Literal["otlp", "otel_reqid_file", "otlp_json_file", "console", "none"]
OtlpProtocol = Literal["http/protobuf", "grpc"]

_EXPORTERS: tuple[ExporterName, ...] = (
    "otlp",
    "otel_reqid_file",
    "otlp_json_file",
    "console",
    "none",
)
_PROTOCOLS: tuple[OtlpProtocol, ...] = ("http/protobuf", "grpc")
_PROTOCOL_BY_EXPORTER: dict[str, OtlpProtocol] = {
    "otlp_proto_http": "http/protobuf",
    "otlp_proto_grpc": "grpc",
}

#: Loggers through which the SDK's batch processor and the exporters report failures.
_EXPORT_LOGGERS = (
    "opentelemetry.sdk._shared_internal",  # "Queue full, dropping Span.", export exceptions
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.json.file.trace_exporter",
)


@dataclass(frozen=True)
class _ExportSettings:
    """Which span exporter the environment asks for, read once by :func:`_read_export_settings`."""

    exporter: ExporterName
    protocol: OtlpProtocol
    spans_file: str


def _read_export_settings(environ: Mapping[str, str] | None = None) -> _ExportSettings:
    """Read the exporter choice from ``environ`` (default ``os.environ``).

    The only variables this module reads: ``OTEL_TRACES_EXPORTER``, the OTLP endpoint and
    protocol (the span file's path through ``spans_file``); the SDK and the exporters read
    their other settings themselves.

    Raises ``ValueError`` naming the variable when a value is not one we support.
    """
    env = os.environ if environ is None else environ
    exporter, protocol = _exporter_and_protocol(env, "TRACES", "otel_reqid_file", _EXPORTERS)
    return _ExportSettings(
        exporter=cast("ExporterName", exporter),
        protocol=protocol,
        spans_file=spans_file(env),
    )


def _exporter_and_protocol(
    env: Mapping[str, str], signal: str, without_endpoint: str, supported: tuple[str, ...]
) -> tuple[str, OtlpProtocol]:
    """Return the exporter ``OTEL_<signal>_EXPORTER`` names and the OTLP protocol to use.

    ``signal`` is ``TRACES`` or ``LOGS``. The variable may list several exporters: one
    destination is what we build, the first. The exporter packages' own entry point names
    (``otlp_proto_grpc``, ...) pick the protocol along with OTLP. With none named, OTLP when
    an endpoint is set (the signal's own or the general one), else ``without_endpoint``.
    The signal's own protocol variable comes before the general one. Raises
    ``ValueError`` naming the variable when a value is not one of ``supported``.
    """
    endpoint = env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    variable = f"OTEL_{signal}_EXPORTER"
    requested = env.get(variable, "").split(",")[0].strip().lower()
    named_protocol = _PROTOCOL_BY_EXPORTER.get(requested)
    exporter = "otlp" if named_protocol else requested or ("otlp" if endpoint else without_endpoint)
    if exporter not in supported:
        raise ValueError(
            f"{variable}={requested!r} is not supported here; use one of {', '.join(supported)}"
        )
    own_protocol = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    protocol_var = own_protocol if env.get(own_protocol) else "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = named_protocol or env.get(protocol_var, "").strip().lower() or "http/protobuf"
    if protocol not in _PROTOCOLS:
        raise ValueError(
            f"{protocol_var}={protocol!r} is not supported; use one of {', '.join(_PROTOCOLS)}"
        )
    return exporter, protocol


class _ExportLogLimiter(logging.Filter):
    """Let through at most ``burst`` records per logger every ``interval`` seconds.

    The SDK logs every failed export, and every retry of it, so a collector that is down
    writes a few lines per batch, forever, into the application's own log. Attached to
    the loggers in :data:`_EXPORT_LOGGERS`, this keeps the first lines of each outage and
    says how many it dropped on the next line it lets through.
    """

    def __init__(self, *, interval: float = 60.0, burst: int = 2) -> None:
        super().__init__()
        self.interval = interval
        self.burst = burst
        self._lock = threading.Lock()
        # logger name -> [window start, records passed in window, records suppressed]
        self._windows: dict[str, list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Return whether ``record`` fits in its logger's budget; note suppressions on it."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(record.name, [now, 0, 0])
            if now - window[0] >= self.interval:
                window[0], window[1] = now, 0
            if window[1] >= self.burst:
                window[2] += 1
                return False
            window[1] += 1
            suppressed, window[2] = int(window[2]), 0
        if suppressed:
            record.msg = f"{record.getMessage()} ({suppressed} similar messages suppressed)"
            record.args = None
        return True

    def attach(self) -> None:
        """Add this filter to every logger in :data:`_EXPORT_LOGGERS`."""
        for name in _EXPORT_LOGGERS:
            logging.getLogger(name).addFilter(self)

    def detach(self) -> None:
        """Remove this filter from every logger in :data:`_EXPORT_LOGGERS`."""
        for name in _EXPORT_LOGGERS:
            logging.getLogger(name).removeFilter(self)


def _build_exporter(settings: _ExportSettings, export_timeout: float | None) -> SpanExporter | None:
    if settings.exporter == "none":
        return None
    if settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if settings.exporter in {"otel_reqid_file", "otlp_json_file"}:
        from .file_exporter import SpansFileExporter

        return SpansFileExporter(settings.spans_file)
    # The OTLP exporters read the endpoint, headers, compression and, when export_timeout
    # is None, the timeout from the OTEL_EXPORTER_OTLP_* variables themselves.
    if settings.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError as error:
            raise MissingExtraError("OTLP over gRPC", "grpc", error) from None
        return GrpcSpanExporter(timeout=export_timeout)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )
    except ImportError as error:
        raise MissingExtraError("OTLP over HTTP", "export", error) from None
    return HttpSpanExporter(timeout=export_timeout)


def _log_limiter_processor(limiter: _ExportLogLimiter) -> SpanProcessor:
    """A span processor that only detaches ``limiter`` when the provider shuts down."""
    from opentelemetry.sdk.trace import SpanProcessor

    class _DetachOnShutdown(SpanProcessor):
        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            pass

        def on_end(self, span: ReadableSpan) -> None:
            pass

        def shutdown(self) -> None:
            limiter.detach()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    return _DetachOnShutdown()


def configure_tracing(
    *,
    service_name: str | None = None,
    exporter: SpanExporter | None = None,
    sampler: Sampler | None = None,
    max_queue_size: int | None = None,
    max_export_batch_size: int | None = None,
    schedule_delay_millis: float | None = None,
    export_timeout: float | None = None,
    error_log_interval: float | None = 60.0,
    set_global: bool = False,
) -> TracerProvider:
    """Build a tracer provider that batches spans to the exporter the environment selects.

    ``service_name`` overrides ``OTEL_SERVICE_NAME``; ``exporter`` replaces the choice
    read from the environment; ``sampler`` replaces ``OTEL_TRACES_SAMPLER``. The batch
    queue holds at most ``max_queue_size`` spans (``OTEL_BSP_MAX_QUEUE_SIZE``, 2048); when it
    is full, each new span pushes out the oldest one waiting, so a collector that is down
    costs bounded memory.
    ``export_timeout`` (seconds) bounds each OTLP export, retries included
    (``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s). Export failures are logged at most twice per
    logger every ``error_log_interval`` seconds until the provider shuts down (None logs
    them all). ``set_global`` makes it the global tracer provider.
    """
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise MissingExtraError("configure_tracing", "sdk", error) from None

    if exporter is None:
        exporter = _build_exporter(_read_export_settings(), export_timeout)
    attributes = {SERVICE_NAME: service_name} if service_name is not None else {}
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME under these.
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    if exporter is not None:
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=max_queue_size,
                max_export_batch_size=max_export_batch_size,
                schedule_delay_millis=schedule_delay_millis,
            )
        )
        if error_log_interval is not None:
            limiter = _ExportLogLimiter(interval=error_log_interval)
            limiter.attach()
            # Added after the batch processor, so it detaches after the final flush.
            provider.add_span_processor(_log_limiter_processor(limiter))
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


# -- Log records -------------------------------------------------------------------------

LogsExporterName = Literal["otlp", "none"]
_LOGS_EXPORTERS: tuple[LogsExporterName, ...] = ("otlp", "none")


@dataclass(frozen=True)
class _LogExportSettings:
    """Whether and how to send log records, read once by :func:`_read_log_export_settings`."""

    exporter: LogsExporterName
    protocol: OtlpProtocol


def _read_log_export_settings(environ: Mapping[str, str] | None = None) -> _LogExportSettings:
    """Read ``OTEL_LOGS_EXPORTER`` and the OTLP endpoint and protocol (logs' own first).

    Raises ``ValueError`` naming the variable when a value is not one we support.
    """
    env = os.environ if environ is None else environ
    exporter, protocol = _exporter_and_protocol(env, "LOGS", "none", _LOGS_EXPORTERS)
    return _LogExportSettings(exporter=cast("LogsExporterName", exporter), protocol=protocol)


def _build_log_exporter(protocol: OtlpProtocol) -> LogRecordExporter:
    # The OTLP log exporters read the endpoint, headers, compression and timeout from the
    # OTEL_EXPORTER_OTLP_[LOGS_]* variables themselves.
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
                OTLPLogExporter as GrpcLogExporter,
            )
        except ImportError as error:
            raise MissingExtraError("OTLP over gRPC", "grpc", error) from None
        return GrpcLogExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import (
            OTLPLogExporter as HttpLogExporter,
        )
    except ImportError as error:
        raise MissingExtraError("OTLP over HTTP", "export", error) from None
    return HttpLogExporter()


def _not_opentelemetry(record: logging.LogRecord) -> bool:
    """Keep OpenTelemetry's own records (a failed export, say) out of the export, where a
    collector that is down would be sent news of its own absence, and fail again."""
    return not (record.name == "opentelemetry" or record.name.startswith("opentelemetry."))


def _logging_handler(provider: LoggerProvider) -> logging.Handler:
    """OpenTelemetry's logging handler: opentelemetry-instrumentation-logging's where it is
    installed, else the SDK's own (deprecated there in its favour, and otherwise the same)."""
    try:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
    except ImportError:
        import warnings

        from opentelemetry.sdk._logs import LoggingHandler as SdkLoggingHandler

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return SdkLoggingHandler(logger_provider=provider)
    return LoggingHandler(logger_provider=provider)


@dataclass(frozen=True)
class LogExport:
    """Log records on their way out: the provider, and the handler that feeds it."""

    provider: LoggerProvider
    #: OpenTelemetry's logging handler, attached to ``logger``.
    handler: logging.Handler
    logger: logging.Logger

    def shutdown(self) -> None:
        """Detach the handler, then export what is still queued (bounded by the timeout)."""
        self.logger.removeHandler(self.handler)
        self.provider.shutdown()


def configure_log_export(
    *,
    service_name: str | None = None,
    exporter: LogRecordExporter | None = None,
    logger: logging.Logger | None = None,
    level: int = logging.NOTSET,
) -> LogExport | None:
    """Send the records of ``logger`` (default: the root logger) over OTLP, batched.

    Each exported record carries its trace and span ids, and as attributes the ids this
    library puts on records (``request_id``, ``trace_id``, ...) when its record factory is
    installed. ``exporter`` replaces the one the environment selects. Returns None, and
    attaches nothing, when ``OTEL_LOGS_EXPORTER`` is ``none`` or, unset, when no OTLP
    endpoint is configured. ``service_name`` overrides ``OTEL_SERVICE_NAME``; the SDK reads
    ``OTEL_RESOURCE_ATTRIBUTES`` and the batching variables ``OTEL_BLRP_*``. Records of
    OpenTelemetry's own loggers are not exported. Call :meth:`LogExport.shutdown` at exit.
    """
    try:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    except ImportError as error:
        raise MissingExtraError("configure_log_export", "sdk", error) from None

    if exporter is None:
        settings = _read_log_export_settings()
        if settings.exporter == "none":
            return None
        exporter = _build_log_exporter(settings.protocol)
    attributes = {SERVICE_NAME: service_name} if service_name is not None else {}
    provider = LoggerProvider(resource=Resource.create(attributes))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    handler = _logging_handler(provider)
    handler.setLevel(level)
    handler.addFilter(_not_opentelemetry)
    target = logger or logging.getLogger()
    target.addHandler(handler)
    return LogExport(provider=provider, handler=handler, logger=target)
