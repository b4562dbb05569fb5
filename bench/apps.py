"""The hello app under each benchmarked configuration, served by a process of its own.

Every configuration serves the same handler (one INFO line per request) with the access
log on, and writes every record to a file through a ``logging.FileHandler``, each with
the log format a user of that configuration would pick to see its ids. Run one server
with ``python -m bench.apps CONFIGURATION LOG_FILE CORE``: it pins itself to ``CORE``,
listens on a free loopback port, prints ``READY <port>`` and serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_log import AccessLogger

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "CONFIGURATIONS",
    "PATH",
    "Configuration",
    "ServerProcess",
    "main",
]

PATH = "/hello/bench"
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0

_log = logging.getLogger("bench.hello")


@dataclass(frozen=True)
class Parts:
    """What a configuration adds to the bare app: middlewares and an access logger."""

    middlewares: list[Middleware] = field(default_factory=list)
    access_log_class: type[AbstractAccessLogger] = AccessLogger


@dataclass(frozen=True)
class Configuration:
    """One way of serving the hello app; ``setup`` runs only in the server process."""

    name: str
    description: str
    log_format: str
    setup: Callable[[], Parts]


async def hello(request: web.Request) -> web.Response:
    """The benchmarked handler: one log line, a short text response."""
    _log.info("hello from %s", request.match_info["name"])
    return web.Response(text="Hello, world!\n")


def _dropping_provider() -> TracerProvider:
    """Return an SDK tracer provider whose BatchSpanProcessor hands spans to a sink.

    The spans go through the whole SDK pipeline (sampler, processor queue, worker
    thread) and are then dropped, so no exporter's I/O is measured.
    """
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class DroppingExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
    return provider


def _set_global_provider(provider: TracerProvider) -> None:
    from opentelemetry import trace  # noqa: PLC0415

    trace.set_tracer_provider(provider)


def _set_global_meter_provider() -> None:
    """Set an SDK meter provider whose reader exports (to nowhere) once a minute.

    Every measurement goes through the SDK's aggregation, as in production; the
    periodic export never falls inside a measured run of the benchmark.
    """
    from opentelemetry import metrics  # noqa: PLC0415
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import (  # noqa: PLC0415
        MetricExporter,
        MetricExportResult,
        MetricsData,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415

    class DroppingMetricExporter(MetricExporter):
        def export(
            self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    reader = PeriodicExportingMetricReader(DroppingMetricExporter(), export_interval_millis=60_000)
    metrics.set_meter_provider(
        MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "bench"}))
    )


_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"


def _semconv(mode: str | None) -> None:
    """Choose the HTTP semantic-convention mode of both libraries (None: the old default).

    Set before either instruments anything: both read it once.
    """
    if mode is None:
        os.environ.pop(_OPT_IN, None)
    else:
        os.environ[_OPT_IN] = mode


def _instrument_aiohttp_server(provider: TracerProvider) -> None:
    """Turn on OpenTelemetry's aiohttp-server instrumentation (it patches web.Application)."""
    from opentelemetry.instrumentation.aiohttp_server import (  # noqa: PLC0415
        AioHttpServerInstrumentor,
    )

    AioHttpServerInstrumentor().instrument(tracer_provider=provider)


def _bare() -> Parts:
    return Parts()


def _noop() -> Parts:
    @web.middleware
    async def noop(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request)

    return Parts(middlewares=[noop])


def _ancestor() -> Parts:
    from aiohttp_request_id_logging import (  # noqa: PLC0415
        RequestIdAccessLogger,
        RequestIdMiddleware,
        setup_logging_request_id_prefix,
    )

    setup_logging_request_id_prefix()
    return Parts(middlewares=[RequestIdMiddleware()], access_log_class=RequestIdAccessLogger)


def _otel_server(mode: str | None = "http") -> Parts:
    _semconv(mode)
    provider = _dropping_provider()
    _set_global_provider(provider)
    _set_global_meter_provider()
    _instrument_aiohttp_server(provider)
    return Parts()


def _sdk_floor() -> Parts:
    """The least a tracing middleware does: the SDK's SERVER span, current, five attributes.

    No context extraction, no metrics, no ids: what it costs is the SDK's span itself.
    """
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    provider = _dropping_provider()
    _set_global_provider(provider)
    tracer = provider.get_tracer("bench.sdk_floor")

    @web.middleware
    async def sdk_floor(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        template = "" if route is None else route.canonical
        with tracer.start_as_current_span(
            f"{request.method} {template}",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": request.method,
                "url.scheme": request.scheme,
                "url.path": request.path,
                "http.route": template,
                "server.address": request.host,
            },
        ) as span:
            response = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
            return response

    return Parts(middlewares=[sdk_floor])


def _otel() -> Parts:
    from opentelemetry.instrumentation.logging import LoggingInstrumentor  # noqa: PLC0415

    parts = _otel_server()
    # inject_trace_context adds the ids without calling logging.basicConfig; the log
    # handler that ships records as OpenTelemetry logs is a separate feature, left off.
    LoggingInstrumentor().instrument(
        set_logging_format=False,
        inject_trace_context=True,
        enable_log_auto_instrumentation=False,
    )
    return parts


def _ours(
    *, own_provider: bool, on_otel: bool, with_metrics: bool = False, mode: str | None = "http"
) -> Parts:
    from otel_reqid_logging import (  # noqa: PLC0415
        RequestIdAccessLogger,
        RequestIdMiddleware,
        install_record_factory,
    )

    _semconv(mode)
    provider = None
    if own_provider or on_otel:
        provider = _dropping_provider()
        _set_global_provider(provider)
    if with_metrics or on_otel:
        _set_global_meter_provider()
    if on_otel:
        assert provider is not None
        _instrument_aiohttp_server(provider)
    install_record_factory()
    return Parts(
        middlewares=[RequestIdMiddleware(tracer_provider=provider)],
        access_log_class=RequestIdAccessLogger,
    )


def _ours_span() -> Parts:
    return _ours(own_provider=True, on_otel=False)


def _ours_span_metrics() -> Parts:
    return _ours(own_provider=True, on_otel=False, with_metrics=True)


def _ours_span_old() -> Parts:
    return _ours(own_provider=True, on_otel=False, mode=None)


def _ours_span_metrics_old() -> Parts:
    return _ours(own_provider=True, on_otel=False, with_metrics=True, mode=None)


def _ours_span_metrics_dup() -> Parts:
    return _ours(own_provider=True, on_otel=False, with_metrics=True, mode="http/dup")


def _ours_ids() -> Parts:
    return _ours(own_provider=False, on_otel=False)


def _ours_on_otel() -> Parts:
    return _ours(own_provider=False, on_otel=True)


_OURS_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [req:%(request_id)s trace:%(trace_id)s] %(message)s"
)

CONFIGURATIONS: dict[str, Configuration] = {
    c.name: c
    for c in [
        Configuration("bare", "bare aiohttp", PLAIN_FORMAT, _bare),
        Configuration("noop", "a middleware that does nothing", PLAIN_FORMAT, _noop),
        Configuration(
            "ancestor",
            "aiohttp-request-id-logging 1.0.0, its defaults",
            "%(asctime)s %(levelname)s %(name)s %(requestIdPrefix)s%(message)s",
            _ancestor,
        ),
        Configuration(
            "otel_server",
            "OpenTelemetry aiohttp-server instrumentation, SDK, metrics",
            PLAIN_FORMAT,
            _otel_server,
        ),
        Configuration(
            "otel_server_old",
            "the same in the old (default) HTTP semantic conventions",
            PLAIN_FORMAT,
            lambda: _otel_server(None),
        ),
        Configuration(
            "otel_server_dup",
            "the same in http/dup: old and stable conventions",
            PLAIN_FORMAT,
            lambda: _otel_server("http/dup"),
        ),
        Configuration(
            "otel",
            "OpenTelemetry aiohttp-server + logging instrumentations, SDK, metrics",
            "%(asctime)s %(levelname)s %(name)s [trace:%(otelTraceID)s span:%(otelSpanID)s]"
            " %(message)s",
            _otel,
        ),
        Configuration(
            "sdk_floor",
            "a middleware that only runs the SDK's SERVER span (five attributes, status)",
            PLAIN_FORMAT,
            _sdk_floor,
        ),
        Configuration("ours_span", "this library, its own span, SDK", _OURS_FORMAT, _ours_span),
        Configuration(
            "ours_span_metrics",
            "this library, its own span and HTTP metrics, SDK",
            _OURS_FORMAT,
            _ours_span_metrics,
        ),
        Configuration(
            "ours_span_old",
            "this library, its own span, SDK, old (default) conventions",
            _OURS_FORMAT,
            _ours_span_old,
        ),
        Configuration(
            "ours_span_metrics_old",
            "this library, its own span and HTTP metrics, SDK, old (default) conventions",
            _OURS_FORMAT,
            _ours_span_metrics_old,
        ),
        Configuration(
            "ours_span_metrics_dup",
            "this library, its own span and HTTP metrics, SDK, http/dup conventions",
            _OURS_FORMAT,
            _ours_span_metrics_dup,
        ),
        Configuration("ours_ids", "this library, no SDK (ids only)", _OURS_FORMAT, _ours_ids),
        Configuration(
            "ours_on_otel",
            "this library inside OpenTelemetry's aiohttp-server span, SDK, metrics",
            _OURS_FORMAT,
            _ours_on_otel,
        ),
    ]
}


def _configure_logging(log_format: str, log_file: str) -> None:
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter(log_format))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


async def _serve(configuration: Configuration, log_file: str) -> None:
    """Serve the app on a free loopback port until SIGTERM."""
    _configure_logging(configuration.log_format, log_file)
    parts = configuration.setup()
    # Looked up as web.Application at call time: OpenTelemetry's instrumentation
    # replaces that class to insert its middleware first.
    app = web.Application(middlewares=parts.middlewares)
    app.router.add_get("/hello/{name}", hello)
    runner = web.AppRunner(app, access_log_class=parts.access_log_class)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"READY {runner.addresses[0][1]}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    """Run one benchmark server: ``python -m bench.apps CONFIGURATION LOG_FILE CORE``."""
    name, log_file, core = argv if argv is not None else sys.argv[1:]
    # Before anything starts a thread, so that every thread (the span processor's
    # worker included) inherits the pinning.
    os.sched_setaffinity(0, {int(core)})
    asyncio.run(_serve(CONFIGURATIONS[name], log_file))


class ServerProcess:
    """A running benchmark server: its port, its CPU time and its log file."""

    def __init__(
        self,
        configuration: str,
        log_file: Path,
        core: int,
        *,
        wrapper: Sequence[str] = (),
        environment: dict[str, str] | None = None,
        start_timeout_s: float = _START_TIMEOUT_S,
    ) -> None:
        """Start the server for ``configuration`` and wait until it listens.

        ``wrapper`` is a command that runs the interpreter (valgrind and its options).
        """
        self.configuration = configuration
        self.log_file = log_file
        self._process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
            [
                *wrapper,
                sys.executable,
                "-m",
                "bench.apps",
                configuration,
                str(log_file),
                str(core),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=None if environment is None else {**os.environ, **environment},
        )
        self.port = self._wait_ready(start_timeout_s)
        self.url = f"http://127.0.0.1:{self.port}{PATH}"

    def _wait_ready(self, timeout_s: float) -> int:
        stdout: IO[str] | None = self._process.stdout
        assert stdout is not None
        line = _readline(stdout, timeout_s)
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(
                f"benchmark server {self.configuration!r} did not start "
                f"(exit code {self._process.poll()}); its error is printed above"
            )
        return int(line.split()[1])

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self._process.pid

    def cpu_seconds(self) -> float:
        """Return the CPU time (user + system, all threads) the server has used so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # Fields after the command name, which is in parentheses and may contain spaces.
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def take_log_lines(self) -> int:
        """Return the number of log lines written since the last call, and forget them."""
        with self.log_file.open("rb") as file:
            count = sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))
        # The server's FileHandler appends, so it writes at the new end after this.
        os.truncate(self.log_file, 0)
        return count

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                # Under valgrind a server takes a while to write its final profile.
                self._process.wait(_STOP_TIMEOUT_S * 6)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _readline(stream: IO[str], timeout: float) -> str:
    """Read one line from a child's pipe, giving up after ``timeout`` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return stream.readline()


if __name__ == "__main__":
    main()
