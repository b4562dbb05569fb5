"""`otel-reqid-logging demo`: a shop calling a payment service, and the lookup of a failure.

Two services run on loopback, each with its own tracer provider and log file: the shop
calls the payment service through ``client_trace_config()``, so one trace holds the spans
of both. Spans go to a local OTLP-JSON-lines file and the lookup reads them back from
there, so nothing beyond the ``sdk`` extra is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import shlex
import sys
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from aiohttp import ClientSession, web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import trace

from ._client import client_trace_config
from ._extras import MissingExtraError
from .export import configure_log_export, configure_tracing
from .instrumentor import RequestIdInstrumentor
from .lookup._cli import run as run_lookup
from .records import LOG_FORMAT

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["make_app", "make_payment_app", "run_demo", "serve"]

log = logging.getLogger("shop")
payment_log = logging.getLogger("payment")
SERVICE_NAME = "otel-reqid-demo"
PAYMENT_SERVICE_NAME = "otel-reqid-demo-payment"
DEFAULT_SPANS_FILE = "demo-spans.jsonl"
# The demo's lines carry the span id too, so that the lookup places each on its span.
_LOG_FORMAT_WITH_SPAN = LOG_FORMAT.replace(
    "trace:%(trace_id)s]", "trace:%(trace_id)s span:%(span_id)s]"
)
_TRACER_KEY = web.AppKey("tracer", trace.Tracer)
_PAYMENT_URL_KEY = web.AppKey("payment_url", str)
_CLIENT_KEY = web.AppKey("client", ClientSession)
# Which service a record was made in, so that its line goes to that service's log file
# whichever logger wrote it (the library's middleware, aiohttp's).
_SERVICE: ContextVar[str | None] = ContextVar("demo_service", default=None)


def _in_service(name: str) -> Middleware:
    # The outermost middleware, so that the lines of every other one are marked too.
    @web.middleware
    async def mark(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Not reset: the request's task ends with it, and its access line comes after.
        _SERVICE.set(name)
        return await handler(request)

    return mark


async def show_order(request: web.Request) -> web.Response:
    """Load an order, with a child span for the database call."""
    order = request.match_info["order"]
    log.info("loading order %s", order)
    with request.app[_TRACER_KEY].start_as_current_span("SELECT orders") as span:
        span.set_attribute("db.system.name", "sqlite")
        log.info("reading order %s from the orders table", order)
        await asyncio.sleep(random.uniform(0.005, 0.03))  # noqa: S311 (jitter, not secrets)
    log.info("order %s has 3 items", order)
    return web.json_response({"order": order, "items": 3})


async def pay(request: web.Request) -> web.Response:
    """Pay an order: read the cart, then have the payment service charge the card."""
    order = request.match_info["order"]
    tracer = request.app[_TRACER_KEY]
    log.info("paying order %s", order)
    with tracer.start_as_current_span("SELECT cart") as span:
        span.set_attribute("db.system.name", "sqlite")
        await asyncio.sleep(0.004)
    payment_url = request.app.get(_PAYMENT_URL_KEY)
    if payment_url is None:
        # Served alone (`demo --serve`): no payment service to call.
        raise ConnectionError(f"payment provider timed out for order {order}")
    with tracer.start_as_current_span("charge card"):
        log.info("asking the payment service to charge order %s", order)
        client = request.app[_CLIENT_KEY]
        async with client.post(f"{payment_url}/charges", json={"order": order}) as answer:
            status = answer.status
            await answer.read()
    if status >= 500:
        log.error("payment of order %s failed: the payment service answered %s", order, status)
        raise web.HTTPBadGateway(text=f"payment of order {order} failed\n")
    return web.json_response({"order": order, "paid": True})


async def charge(request: web.Request) -> web.Response:
    """The payment service: fail the way a call to a card provider might."""
    order = (await request.json())["order"]
    payment_log.info("charging card for order %s", order)
    with request.app[_TRACER_KEY].start_as_current_span("POST provider /v1/charges") as span:
        span.set_attribute("server.address", "cards.example")
        payment_log.info("calling the card provider for order %s", order)
        await asyncio.sleep(0.02)
        raise ConnectionError(f"card provider timed out for order {order}")


def make_app(provider: TracerProvider, *, payment_url: str | None = None) -> web.Application:
    """Build the shop app, instrumented with this library; it calls ``payment_url``'s
    payment service when given (otherwise paying fails on the spot)."""
    app = web.Application()
    app[_TRACER_KEY] = provider.get_tracer("otel_reqid_logging.demo")
    app.router.add_get("/orders/{order}", show_order)
    app.router.add_post("/orders/{order}/pay", pay)
    if payment_url is not None:
        app[_PAYMENT_URL_KEY] = payment_url
        app.cleanup_ctx.append(_client)
    RequestIdInstrumentor().instrument_app(app, tracer_provider=provider)
    app.middlewares.insert(0, _in_service("shop"))
    return app


async def _client(app: web.Application) -> AsyncIterator[None]:
    # The trace goes on to the payment service in the `traceparent` header.
    async with ClientSession(trace_configs=[client_trace_config()]) as session:
        app[_CLIENT_KEY] = session
        yield


def make_payment_app(provider: TracerProvider) -> web.Application:
    """Build the payment service, instrumented with this library."""
    app = web.Application()
    app[_TRACER_KEY] = provider.get_tracer("otel_reqid_logging.demo.payment")
    app.router.add_post("/charges", charge)
    RequestIdInstrumentor().instrument_app(app, tracer_provider=provider)
    app.middlewares.insert(0, _in_service("payment"))
    return app


class _Lines(logging.Handler):
    """Prints records with the demo's format, and writes each service's to its own file."""

    def __init__(self, stream: TextIO, files: dict[str, TextIO]) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(_LOG_FORMAT_WITH_SPAN))
        self.stream = stream
        self.files = files
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.lines.append(line)
        print(line, file=self.stream, flush=True)
        service_file = self.files.get(_SERVICE.get() or record.name.split(".")[0])
        if service_file is not None:
            print(line, file=service_file, flush=True)


async def _start(app: web.Application, name: str) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on a free loopback port; its access and error lines go to ``name``."""
    runner = web.AppRunner(
        app,
        access_log=logging.getLogger(f"{name}.access"),
        logger=logging.getLogger(f"{name}.server"),
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def _serve_and_drive(shop: TracerProvider, payment: TracerProvider) -> None:
    payment_runner, payment_url = await _start(make_payment_app(payment), "payment")
    shop_runner, shop_url = await _start(make_app(shop, payment_url=payment_url), "shop")
    try:
        async with ClientSession() as session:

            async def call(method: str, path: str) -> None:
                async with session.request(method, shop_url + path) as response:
                    await response.read()

            await asyncio.gather(
                call("GET", "/orders/1001"),
                call("GET", "/orders/1002"),
                call("POST", "/orders/1001/pay"),
                call("GET", "/orders/1003"),
            )
    finally:
        await shop_runner.cleanup()
        await payment_runner.cleanup()


def _providers(spans_file: Path) -> tuple[TracerProvider, TracerProvider, SpanExporter]:
    """A tracer provider per service, both writing ``spans_file`` through one exporter
    (it writes under one lock); the exporter is returned to be shut down last."""
    # Imported on use: the exporter needs the sdk extra.
    from opentelemetry.sdk.trace.export import SpanExporter  # noqa: PLC0415

    from .file_exporter import SpansFileExporter  # noqa: PLC0415

    exporter = SpansFileExporter(spans_file)

    class Shared(SpanExporter):
        """The one exporter, left open when a provider shuts down."""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return exporter.export(spans)

    return (
        configure_tracing(service_name=SERVICE_NAME, exporter=Shared()),
        configure_tracing(service_name=PAYMENT_SERVICE_NAME, exporter=Shared()),
        exporter,
    )


def run_demo(spans_file: Path, *, out: TextIO = sys.stdout) -> int:
    """Serve four concurrent requests to the shop (paying calls the payment service, which
    fails), print their lines, and look the failing one up from its log line.

    The spans are appended to ``spans_file`` and the lines of each service to a log file
    beside it: they may be an app's own files, and the lookup asks for one trace id,
    which earlier spans and lines cannot confuse.
    """
    log_files = {name: spans_file.parent / f"demo-{name}.log" for name in ("shop", "payment")}
    root = logging.getLogger()
    level = root.level
    shop, payment, exporter = _providers(spans_file)
    with (
        log_files["shop"].open("a") as shop_lines,
        log_files["payment"].open("a") as payment_lines,
    ):
        lines = _Lines(out, {"shop": shop_lines, "payment": payment_lines})
        root.addHandler(lines)
        root.setLevel(logging.INFO)
        try:
            print(
                "== A shop and its payment service; four concurrent requests, "
                "paying order 1001 fails ==\n",
                file=out,
                flush=True,
            )
            asyncio.run(_serve_and_drive(shop, payment))
            shop.force_flush()
            payment.force_flush()
        finally:
            shop.shutdown()
            payment.shutdown()
            exporter.shutdown()
            root.removeHandler(lines)
            root.setLevel(level)
    failing = next(line for line in lines.lines if " ERROR shop " in line)
    logs = [arg for path in log_files.values() for arg in ("--logs", str(path))]
    command = ["--file", str(spans_file), *logs]
    print(
        "\n== Looking up the failing request from the shop's log line ==\n\n"
        f"$ otel-reqid-logging lookup {shlex.join([*command, failing])}\n",
        file=out,
        flush=True,
    )
    code = run_lookup(["--backend", "file", *command, failing])
    print(
        "\nThe same as a page to open in a browser: add --html trace.html to that command.\n"
        "With the spans exported to Jaeger, --jaeger-url URL replaces --file, and a line "
        "from either service's log finds the trace.",
        file=out,
        flush=True,
    )
    return code


def serve(*, host: str, port: int, spans_file: Path | None = None) -> None:
    """Serve the shop until interrupted, exporting spans to ``spans_file`` when given,
    else where the OTEL_* variables say; log records go where they say too (over OTLP when
    an endpoint is configured, as in docker-compose.yml), besides the lines on stderr."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    exporter = None
    if spans_file is not None:
        from .file_exporter import SpansFileExporter  # noqa: PLC0415 (the sdk extra)

        exporter = SpansFileExporter(spans_file)
    provider = configure_tracing(service_name=SERVICE_NAME, exporter=exporter)
    log_export = configure_log_export(service_name=SERVICE_NAME)
    try:
        web.run_app(make_app(provider), host=host, port=port)
    finally:
        if log_export is not None:
            log_export.shutdown()
        provider.shutdown()


def main(argv: Sequence[str]) -> int:
    """Entry for the CLI's ``demo`` sub-command, given the words after it."""
    parser = argparse.ArgumentParser(
        prog="otel-reqid-logging demo",
        description=(
            "A shop calling a payment service on loopback: four concurrent requests (paying "
            "fails in the payment service), their log lines, and the lookup of the failing "
            "one from its log line, with the spans in a local file and each service's lines "
            "in its own log file beside it. Needs the sdk extra."
        ),
    )
    parser.add_argument(
        "--spans-file",
        type=Path,
        metavar="PATH",
        help=f"append the spans here (default: {DEFAULT_SPANS_FILE}; with --serve, where "
        "the OTEL_* variables say); the log files demo-shop.log and demo-payment.log "
        "go beside it",
    )
    parser.add_argument("--serve", action="store_true", help="serve the shop until interrupted")
    parser.add_argument(
        "--host",
        default="0.0.0.0",  # noqa: S104 (the container's port)
        help="with --serve: address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="with --serve: port (default: %(default)s)"
    )
    args = parser.parse_args(list(argv))
    try:
        from . import file_exporter  # noqa: F401, PLC0415 (is the sdk extra installed?)
    except MissingExtraError as error:
        print(f"otel-reqid-logging demo: {error}", file=sys.stderr)
        return 2
    if args.serve:
        serve(host=args.host, port=args.port, spans_file=args.spans_file)
        return 0
    return run_demo(args.spans_file or Path(DEFAULT_SPANS_FILE))
