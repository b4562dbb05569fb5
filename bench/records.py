"""Micro-benchmark: what each log record factory adds to one ``logger.info`` call.

Each factory is timed as ``logger.info("hello %s", arg)`` on a logger whose only
handler discards records, so a call is findCaller + the factory + LogRecord + handler
dispatch; the plain ``logging.LogRecord`` run of the same repeat is subtracted. Timed in
three places (``PLACES``): outside any request; inside one, where every factory finds
what it looks for (OpenTelemetry's current span, the ancestor's ContextVar, our request
ids); and inside a span that is not a request's (a background job's).
"""

from __future__ import annotations

import contextvars
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "FACTORY_NAMES",
    "PLACES",
    "FactoryResult",
    "emit",
    "factories",
    "make_logger",
    "measure_factories",
    "places",
]

FACTORY_NAMES = ("plain", "ancestor", "otel", "ours")
PLACES = ("outside", "request", "span")

_RecordFactory = Callable[..., logging.LogRecord]


@dataclass(frozen=True)
class FactoryResult:
    """Median nanoseconds per record for one factory, and the medians of deltas to plain."""

    name: str
    outside_ns: float
    inside_ns: float
    span_ns: float
    outside_delta_ns: float
    inside_delta_ns: float
    span_delta_ns: float


@contextmanager
def _restoring_factory() -> Iterator[None]:
    saved = logging.getLogRecordFactory()
    try:
        yield
    finally:
        logging.setLogRecordFactory(saved)


def factories() -> dict[str, _RecordFactory]:
    """Install each library's factory on top of plain LogRecord and keep what it installed."""
    from aiohttp_request_id_logging import setup_logging_request_id_prefix  # noqa: PLC0415
    from opentelemetry.instrumentation.logging import LoggingInstrumentor  # noqa: PLC0415

    from otel_reqid_logging import install_record_factory, uninstall_record_factory  # noqa: PLC0415

    factories: dict[str, _RecordFactory] = {"plain": logging.LogRecord}
    with _restoring_factory():
        logging.setLogRecordFactory(logging.LogRecord)
        # The ancestor marks the logging module once per process; unmark it so that its
        # setup installs the factory here even when something already ran it.
        vars(logging).pop("request_id_log_record_factory_set_up", None)
        setup_logging_request_id_prefix()
        factories["ancestor"] = logging.getLogRecordFactory()

        logging.setLogRecordFactory(logging.LogRecord)
        instrumentor = LoggingInstrumentor()
        instrumentor.instrument(
            set_logging_format=False,
            inject_trace_context=True,
            enable_log_auto_instrumentation=False,
        )
        factories["otel"] = logging.getLogRecordFactory()
        instrumentor.uninstrument()

        logging.setLogRecordFactory(logging.LogRecord)
        install_record_factory()
        factories["ours"] = logging.getLogRecordFactory()
        uninstall_record_factory()
    return factories


class _RequestState:
    """The state of one running request, as each library would look for it."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.trace import SpanKind  # noqa: PLC0415

        from otel_reqid_logging._context import RequestIds  # noqa: PLC0415
        from otel_reqid_logging._ids import request_id_from_span_id  # noqa: PLC0415

        span = provider.get_tracer("bench").start_span("GET /hello/{name}", kind=SpanKind.SERVER)
        span_context = span.get_span_context()
        self.request_id = request_id_from_span_id(span_context.span_id)
        self.ids = RequestIds(
            request_id=self.request_id,
            trace_id=span_context.trace_id,
            span_id=span_context.span_id,
            sampled=True,
            sampled_flag=True,
            service_name="bench",
        )
        self.otel_context = trace.set_span_in_context(span)

    @contextmanager
    def current(self) -> Iterator[None]:
        """Make this request's state current while the block runs."""
        from aiohttp_request_id_logging import request_id as ancestor_id  # noqa: PLC0415
        from opentelemetry import context  # noqa: PLC0415

        from otel_reqid_logging._context import _ids, request_id  # noqa: PLC0415

        token = context.attach(self.otel_context)
        tokens = [(var, var.set(self.request_id)) for var in (ancestor_id, request_id)]
        ids_token = _ids.set(self.ids)
        try:
            yield
        finally:
            _ids.reset(ids_token)
            for var, var_token in reversed(tokens):
                var.reset(var_token)
            context.detach(token)


@contextmanager
def _in_span(provider: TracerProvider) -> Iterator[None]:
    """Run the block inside a current SDK span that no request started (a background job)."""
    with provider.get_tracer("bench").start_as_current_span("nightly job"):
        yield


@contextmanager
def _outside() -> Iterator[None]:
    yield


def places() -> dict[str, Callable[[], AbstractContextManager[None]]]:
    """Return, for each of ``PLACES``, a context manager that puts the caller there."""
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415

    provider = TracerProvider(shutdown_on_exit=False)
    request = _RequestState(provider)
    return {
        "outside": _outside,
        "request": request.current,
        "span": lambda: _in_span(provider),
    }


def make_logger() -> logging.Logger:
    """Return a logger that makes records and hands them to a handler that drops them."""
    logger = logging.Logger("bench.records", logging.INFO)
    logger.addHandler(logging.NullHandler())
    return logger


def emit(logger: logging.Logger, number: int) -> None:
    """Log ``number`` records."""
    info = logger.info
    for _ in range(number):
        info("hello %s", "bench")


def _ns_per_record(logger: logging.Logger, number: int) -> float:
    info = logger.info
    start = time.perf_counter_ns()
    for _ in range(number):
        info("hello %s", "bench")
    return (time.perf_counter_ns() - start) / number


def _measure(
    factories: dict[str, _RecordFactory], repeats: int, number: int
) -> dict[tuple[str, str], list[float]]:
    logger = make_logger()
    timings: dict[tuple[str, str], list[float]] = {
        (name, place): [] for name in factories for place in PLACES
    }
    names = list(factories)
    where = places()
    with _restoring_factory():
        for repeat in range(repeats):
            # Rotate the order so that no factory always runs first or last.
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                logging.setLogRecordFactory(factories[name])
                for place in PLACES:
                    with where[place]():
                        timings[name, place].append(_ns_per_record(logger, number))
    return timings


def measure_factories(*, repeats: int = 15, number: int = 20_000) -> list[FactoryResult]:
    """Time every factory ``repeats`` times, ``number`` records each, in a fresh context."""
    made = factories()
    # A copy of the context, so that nothing set while measuring outlives the call.
    timings = contextvars.copy_context().run(_measure, made, repeats, number)

    def delta(name: str, place: str) -> float:
        pairs = zip(timings[name, place], timings["plain", place], strict=True)
        return statistics.median(value - plain for value, plain in pairs)

    return [
        FactoryResult(
            name=name,
            outside_ns=statistics.median(timings[name, "outside"]),
            inside_ns=statistics.median(timings[name, "request"]),
            span_ns=statistics.median(timings[name, "span"]),
            outside_delta_ns=delta(name, "outside"),
            inside_delta_ns=delta(name, "request"),
            span_delta_ns=delta(name, "span"),
        )
        for name in made
    ]
