"""What each piece of the middleware's hot path costs, in instructions: a profile.

callgrind sees C functions only, so the interpreter's time cannot be split by Python
function from a server's profile. Here each piece runs alone, N times in a loop, in
one process under callgrind (``python -m bench.pieces N``, driven like
``bench.record_counts``), on a request that aiohttp's test helper made and the app's
router resolved: the whole middleware in each set-up, and the steps it takes.
``python -m bench --pieces`` prints the table.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

__all__ = ["PIECES", "main"]

_WARMUP_CALLS = 200


class _Transport:
    """Just enough of a TCP transport for a request to know its peer (a Mock costs more)."""

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return False


def _request(app: web.Application) -> web.Request:
    request = make_mocked_request(
        "GET",
        "/hello/bench",
        headers={"Host": "127.0.0.1:8080", "User-Agent": "bench-callgrind", "Accept": "*/*"},
        app=app,
        transport=_Transport(),
    )
    match = asyncio.run(app.router.resolve(request))
    request._match_info = match  # what aiohttp does before the handler
    return request


async def _hello(request: web.Request) -> web.StreamResponse:
    return web.Response(text="Hello, world!\n")


def _drive(make: Callable[[], Coroutine[Any, Any, Any]]) -> Callable[[], None]:
    """Run a coroutine that never waits, without an event loop around it."""

    def call() -> None:
        coroutine = make()
        try:
            coroutine.send(None)
        except StopIteration:
            return
        raise RuntimeError("the piece waited for something")

    return call


def _sdk() -> Any:
    from .apps import _dropping_provider  # noqa: PLC0415

    return _dropping_provider()


def _middleware_pieces() -> dict[str, Callable[[], None]]:
    from opentelemetry import context as otel_context  # noqa: PLC0415
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    from otel_reqid_logging import RequestIdMiddleware  # noqa: PLC0415
    from otel_reqid_logging._incoming import incoming_context  # noqa: PLC0415
    from otel_reqid_logging._semconv import (  # noqa: PLC0415
        _known_method,
        route_of,
        span_name,
    )

    app = web.Application()
    app.router.add_get("/hello/{name}", _hello)
    request = _request(app)
    provider = _sdk()
    tracer = provider.get_tracer("bench.pieces")
    ids_only = RequestIdMiddleware()
    own_span = RequestIdMiddleware(tracer_provider=provider)

    def fresh_request_call(middleware: RequestIdMiddleware) -> Callable[[], None]:
        def make() -> Coroutine[Any, Any, Any]:
            request._state.clear()  # a new request each time
            return middleware(request, _hello)

        return _drive(make)

    def floor_span() -> None:
        with tracer.start_as_current_span("GET /hello/{name}", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.response.status_code", 200)

    conventions = own_span._spans.conventions

    def our_start_end() -> None:
        route, method = route_of(request), _known_method(request.method)
        tracer.start_span(
            span_name(method, route),
            context=incoming_context(request),
            kind=SpanKind.SERVER,
            attributes=conventions.request_attributes(request, method, route),
        ).end()

    def attach_detach() -> None:
        current = otel_context.get_current()
        token = otel_context.attach(trace.set_span_in_context(trace.INVALID_SPAN, current))
        otel_context.detach(token)

    def attributes() -> None:
        conventions.request_attributes(request, _known_method(request.method), route_of(request))

    from otel_reqid_logging._context import (  # noqa: PLC0415
        REQUEST_ID_KEY,
        REQUEST_IDS_KEY,
        _ids,
        request_id,
    )
    from otel_reqid_logging._otel_server import is_server_span_of_request  # noqa: PLC0415

    no_provider = ids_only._current_provider()
    sample_span, _ = ids_only._spans.start(request, no_provider)
    sample_ids = ids_only._ids_for(request, sample_span, no_provider)
    response = web.Response(text="Hello, world!\n")

    def find_current() -> None:
        is_server_span_of_request(trace.get_current_span(otel_context.get_current()), request)

    def store_ids() -> None:
        request[REQUEST_IDS_KEY] = sample_ids
        request[REQUEST_ID_KEY] = sample_ids.request_id

    def context_vars() -> None:
        token = _ids.set(sample_ids)
        other = request_id.set(sample_ids.request_id)
        request_id.reset(other)
        _ids.reset(token)

    def add_header() -> None:
        ids_only._add_header(response, sample_ids)
        del response.headers["X-Request-ID"]

    async def call_handle() -> web.StreamResponse:
        return await ids_only._handle(request, _hello, sample_span, None)

    return {
        "handler alone": _drive(lambda: _hello(request)),
        "middleware, ids only": fresh_request_call(ids_only),
        "middleware, own span": fresh_request_call(own_span),
        "SDK span: start, 1 attribute, end (as current)": floor_span,
        "SDK span: start with our attributes, end": our_start_end,
        "request_attributes() (the mode in force)": attributes,
        "incoming_context()": lambda: _ignore(incoming_context(request)),
        "attach + detach a span in the OTel context": attach_detach,
        "web.Response()": lambda: _ignore(web.Response(text="Hello, world!\n")),
        "ids only: _passes_through()": lambda: _ignore(ids_only._passes_through(request)),
        "ids only: _current_provider()": lambda: _ignore(ids_only._current_provider()),
        "ids only: find the current span": find_current,
        "ids only: _spans.start()": lambda: _ignore(ids_only._spans.start(request, no_provider)),
        "ids only: _ids_for()": lambda: _ignore(
            ids_only._ids_for(request, sample_span, no_provider)
        ),
        "ids only: sentry scope": lambda: _ignore(
            ids_only._sentry_scope and ids_only._sentry_scope(sample_ids)
        ),
        "ids only: metrics source": lambda: _ignore(ids_only._spans.metrics()),
        "store ids on the request": store_ids,
        "set and reset both ContextVars": context_vars,
        "_add_header() (and take it off)": add_header,
        "_handle() with the handler": _drive(call_handle),
    }


def _metrics_pieces() -> dict[str, Callable[[], None]]:
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: PLC0415

    from otel_reqid_logging._metrics import ServerMetrics  # noqa: PLC0415
    from otel_reqid_logging._semconv import conventions_for, opt_in_mode  # noqa: PLC0415

    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench.pieces")
    histogram = meter.create_histogram("bench.duration", unit="s")
    counter = meter.create_up_down_counter("bench.active", unit="{request}")
    ours = ServerMetrics(
        MeterProvider(metric_readers=[InMemoryMetricReader()]), conventions_for(opt_in_mode())
    )
    active = {"http.request.method": "GET", "url.scheme": "http"}
    duration: dict[str, str | int] = {
        **active,
        "network.protocol.version": "1.1",
        "http.route": "/hello/{name}",
        "http.response.status_code": 200,
    }

    # The start attributes of the stable and of the old conventions: each mode keeps its own.
    start = {
        **duration,
        "http.method": "GET",
        "http.scheme": "http",
        "http.flavor": "1.1",
        "http.host": "127.0.0.1",
        "http.server_name": "127.0.0.1:8080",
        "net.host.name": "127.0.0.1",
        "net.host.port": 8080,
    }
    del start["http.response.status_code"]

    def measure() -> None:
        measurement = ours.start(start)
        measurement.outcome["http.response.status_code"] = 200
        measurement.end()

    return {
        "SDK: one histogram record (a request's duration)": lambda: histogram.record(
            0.001, duration
        ),
        "SDK: one up-down counter add (a synchronous counter takes two a request)": lambda: (
            counter.add(1, active)
        ),
        "our metrics for one request (histogram + observable active count)": measure,
    }


class _Dropping(logging.Handler):
    """A handler that formats the line and drops it: the file write is not ours to count."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def _access_pieces() -> dict[str, Callable[[], None]]:
    from aiohttp.web_log import AccessLogger  # noqa: PLC0415
    from opentelemetry import context as otel_context  # noqa: PLC0415

    from otel_reqid_logging import (  # noqa: PLC0415
        LOG_FORMAT,
        RequestIdAccessLogger,
        RequestIdMiddleware,
    )
    from otel_reqid_logging._context import (  # noqa: PLC0415
        REQUEST_IDS_KEY,
        REQUEST_OTEL_CONTEXT_KEY,
    )
    from otel_reqid_logging.access_log import _FILTER  # noqa: PLC0415
    from otel_reqid_logging.records import install_record_factory  # noqa: PLC0415

    install_record_factory()
    app = web.Application()
    app.router.add_get("/hello/{name}", _hello)
    request = _request(app)
    middleware = RequestIdMiddleware()
    _drive(lambda: middleware(request, _hello))()  # leaves the ids and context on the request
    if REQUEST_IDS_KEY not in request or REQUEST_OTEL_CONTEXT_KEY not in request:
        raise RuntimeError("the middleware left no ids on the request")
    logger = logging.getLogger("bench.pieces.access")
    logger.propagate = False
    handler = _Dropping()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    response = web.Response(text="Hello, world!\n")
    plain = AccessLogger(logger, AccessLogger.LOG_FORMAT)
    ours = RequestIdAccessLogger(logger, AccessLogger.LOG_FORMAT)
    kept = request[REQUEST_OTEL_CONTEXT_KEY]
    record = logging.LogRecord("bench", logging.INFO, __file__, 1, "line", (), None)
    record.__dict__.update(request_id="x")

    def attach_detach() -> None:
        otel_context.detach(otel_context.attach(kept))

    def plain_line() -> None:
        plain.log(request, response, 0.001)

    def our_line() -> None:
        ours.log(request, response, 0.001)

    def filtered() -> None:
        _FILTER.filter(record)

    return {
        "access line: aiohttp's AccessLogger.log": plain_line,
        "access line: RequestIdAccessLogger.log": our_line,
        "access line: the filter on a record with ids": filtered,
        "access line: attach + detach the kept context": attach_detach,
    }


PIECES: dict[str, Callable[[], dict[str, Callable[[], None]]]] = {
    "middleware": _middleware_pieces,
    "metrics": _metrics_pieces,
    "access line": _access_pieces,
}


def _serve(number: int) -> None:
    logging.getLogger().addHandler(logging.NullHandler())
    pieces = {name: piece for build in PIECES.values() for name, piece in build().items()}
    say = sys.stdout
    piece: Callable[[], None] = _nothing
    calls = 0
    for line in sys.stdin:
        command, _, argument = line.rstrip("\n").partition(" ")
        if command == "prepare":
            piece = _nothing if argument == "none" else pieces[argument]
            calls = 0 if argument == "none" else number
            for _ in range(min(calls, _WARMUP_CALLS)):
                piece()
            say.write("ready\n")
        elif command == "run":
            for _ in range(calls):
                piece()
            say.write("done\n")
        elif command == "list":
            say.write("\t".join(pieces) + "\n")
        else:
            say.write("bye\n")
            say.flush()
            return
        say.flush()


def _nothing() -> None:
    return None


def _ignore(value: object) -> None:
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the commands, calling each piece ``N`` times."""
    (number,) = argv if argv is not None else sys.argv[1:]
    contextvars.copy_context().run(_serve, int(number))


if __name__ == "__main__":
    main()
