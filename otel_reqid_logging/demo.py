"""`otel-reqid-logging demo`: a small shop app, concurrent requests, and a trace lookup.

Everything runs on the embedded default: spans go to a local OTLP-JSON-lines file and
the lookup reads them back from there, so nothing beyond the ``sdk`` extra is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from aiohttp import ClientSession, web
from opentelemetry import trace

from ._extras import MissingExtraError
from .export import configure_log_export, configure_tracing
from .instrumentor import RequestIdInstrumentor
from .lookup._cli import run as run_lookup
from .records import LOG_FORMAT

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["make_app", "run_demo", "serve"]

log = logging.getLogger("shop")
SERVICE_NAME = "otel-reqid-demo"
DEFAULT_SPANS_FILE = "demo-spans.jsonl"
_TRACER_KEY = web.AppKey("tracer", trace.Tracer)


async def show_order(request: web.Request) -> web.Response:
    """Load an order, with a child span for the database call."""
    order = request.match_info["order"]
    log.info("loading order %s", order)
    with request.app[_TRACER_KEY].start_as_current_span("SELECT orders") as span:
        span.set_attribute("db.system.name", "sqlite")
        await asyncio.sleep(random.uniform(0.005, 0.03))  # noqa: S311 (jitter, not secrets)
    log.info("order %s has 3 items", order)
    return web.json_response({"order": order, "items": 3})


async def pay(request: web.Request) -> web.Response:
    """Fail the way a real payment call might."""
    order = request.match_info["order"]
    log.info("charging card for order %s", order)
    await asyncio.sleep(0.01)
    raise ConnectionError(f"payment provider timed out for order {order}")


def make_app(provider: TracerProvider) -> web.Application:
    """Build the demo app, instrumented with this library."""
    app = web.Application()
    app[_TRACER_KEY] = provider.get_tracer("otel_reqid_logging.demo")
    app.router.add_get("/orders/{order}", show_order)
    app.router.add_post("/orders/{order}/pay", pay)
    RequestIdInstrumentor().instrument_app(app, tracer_provider=provider)
    return app


class _Lines(logging.Handler):
    """Prints records with the library's format and keeps the lines for the lookup step."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.stream = stream
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.lines.append(line)
        print(line, file=self.stream, flush=True)


async def _drive(url: str) -> None:
    async with ClientSession() as session:

        async def call(method: str, path: str) -> None:
            async with session.request(method, url + path) as response:
                await response.read()

        await asyncio.gather(
            call("GET", "/orders/1001"),
            call("GET", "/orders/1002"),
            call("POST", "/orders/1001/pay"),
            call("GET", "/orders/1003"),
        )


async def _serve_and_drive(provider: TracerProvider) -> None:
    runner = web.AppRunner(make_app(provider))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await _drive(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def run_demo(spans_file: Path, *, out: TextIO = sys.stdout) -> int:
    """Serve four concurrent requests (one fails), print their lines, look one up.

    The spans are appended to ``spans_file``: it may be an app's own span file, and the
    lookup asks for one trace id, which earlier spans in the file cannot confuse.
    """
    # Imported on use: the exporter needs the sdk extra.
    from .file_exporter import SpansFileExporter  # noqa: PLC0415

    lines = _Lines(out)
    root = logging.getLogger()
    root.addHandler(lines)
    root.setLevel(logging.INFO)
    provider = configure_tracing(service_name=SERVICE_NAME, exporter=SpansFileExporter(spans_file))
    try:
        print("== Four concurrent requests, one of them failing ==\n", file=out, flush=True)
        asyncio.run(_serve_and_drive(provider))
        provider.force_flush()
    finally:
        provider.shutdown()
        root.removeHandler(lines)
    failing = next(line for line in lines.lines if " ERROR " in line).splitlines()[0]
    print(
        f"\n== Looking up the failing request from its log line ==\n\n$ otel-reqid-logging "
        f"lookup --file {spans_file} '{failing}'\n",
        file=out,
        flush=True,
    )
    return run_lookup(["--backend", "file", "--file", str(spans_file), failing])


def serve(*, host: str, port: int, spans_file: Path | None = None) -> None:
    """Serve the demo app until interrupted, exporting spans to ``spans_file`` when given,
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
            "A small shop app: four concurrent requests (one fails), their log lines, and "
            "the lookup of the failing one, with spans in a local file. Needs the sdk extra."
        ),
    )
    parser.add_argument(
        "--spans-file",
        type=Path,
        metavar="PATH",
        help=f"append the spans here (default: {DEFAULT_SPANS_FILE}; with --serve, where "
        "the OTEL_* variables say)",
    )
    parser.add_argument("--serve", action="store_true", help="serve until interrupted")
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
