"""The record factory and the logging.Filter."""

from __future__ import annotations

import io
import logging
import logging.config
import threading
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.logging import LoggingInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from otel_reqid_logging import (
    LOG_FORMAT,
    RequestIdFilter,
    install_record_factory,
    uninstall_record_factory,
)
from otel_reqid_logging._context import RequestIds, _ids, request_id
from otel_reqid_logging.records import OUTSIDE_REQUEST, _record_factory_installed

ATTRIBUTES = set(OUTSIDE_REQUEST)
IDS = RequestIds(
    request_id="k3v9q2xd",
    trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
    span_id=0x00F067AA0BA902B7,
    sampled=True,
    sampled_flag=True,
    service_name="shop",
)


def make_record() -> logging.LogRecord:
    return logging.getLogger("tests.records").makeRecord(
        "tests.records", logging.INFO, __file__, 1, "hello %s", ("you",), None
    )


def in_request(function: Any) -> Any:
    token = _ids.set(IDS)
    token2 = request_id.set(IDS.request_id)
    try:
        return function()
    finally:
        request_id.reset(token2)
        _ids.reset(token)


def test_every_record_has_every_attribute() -> None:
    """Inside and outside a request, records carry all attributes, so formats never fail."""
    install_record_factory()
    outside, inside = make_record(), in_request(make_record)
    for record in (outside, inside):
        assert set(record.__dict__) >= ATTRIBUTES
        assert logging.Formatter(LOG_FORMAT).format(record).endswith("hello you")
    assert vars(outside)["request_id"] == "-"
    assert vars(outside)["requestIdPrefix"] == ""
    assert vars(outside)["otelTraceID"] == "0"
    assert vars(outside)["otelTraceSampled"] is False
    assert vars(inside)["request_id"] == "k3v9q2xd"
    assert (
        vars(inside)["trace_id"]
        == vars(inside)["otelTraceID"]
        == "4bf92f3577b34da6a3ce929d0e0e4736"
    )
    assert vars(inside)["span_id"] == vars(inside)["otelSpanID"] == "00f067aa0ba902b7"
    assert vars(inside)["trace_sampled"] is vars(inside)["otelTraceSampled"] is True
    assert vars(inside)["requestIdPrefix"] == "[req:k3v9q2xd] "
    assert vars(inside)["otelServiceName"] == "shop"
    line = logging.Formatter(LOG_FORMAT).format(inside)
    assert "[req:k3v9q2xd trace:4bf92f3577b34da6a3ce929d0e0e4736] hello you" in line


def test_install_is_idempotent_and_chains_the_previous_factory() -> None:
    """Installing twice wraps once, and the factory that was there still runs."""
    base = logging.getLogRecordFactory()
    calls: list[str] = []

    def earlier(*args: Any, **kwargs: Any) -> logging.LogRecord:
        calls.append("earlier")
        return base(*args, **kwargs)

    logging.setLogRecordFactory(earlier)
    install_record_factory()
    ours = logging.getLogRecordFactory()
    install_record_factory()
    assert logging.getLogRecordFactory() is ours
    calls.clear()  # the second install made one probe record through the chain
    record = in_request(
        lambda: logging.getLogRecordFactory()("n", logging.INFO, "p", 1, "m", (), None)
    )
    assert calls == ["earlier"]
    assert vars(record)["request_id"] == "k3v9q2xd"
    uninstall_record_factory()
    assert logging.getLogRecordFactory() is earlier
    assert not _record_factory_installed()


def test_uninstall_keeps_a_factory_installed_later() -> None:
    """Removing ours while a later factory wraps it keeps the later one working."""
    install_record_factory()
    ours = logging.getLogRecordFactory()

    def later(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = ours(*args, **kwargs)
        vars(record)["later"] = True
        return record

    logging.setLogRecordFactory(later)
    uninstall_record_factory()
    assert logging.getLogRecordFactory() is later
    assert not _record_factory_installed()
    record = in_request(make_record)
    assert vars(record)["later"] is True
    assert "request_id" not in record.__dict__
    install_record_factory()
    assert logging.getLogRecordFactory() is later
    assert in_request(make_record).request_id == "k3v9q2xd"


def test_filter_for_dict_config() -> None:
    """The Filter, set up through dictConfig, gives a handler's records the ids."""
    stream = io.StringIO()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"ids": {"()": RequestIdFilter}},
            "formatters": {"plain": {"format": LOG_FORMAT}},
            "handlers": {
                "out": {
                    "class": "logging.StreamHandler",
                    "stream": stream,
                    "filters": ["ids"],
                    "formatter": "plain",
                }
            },
            "loggers": {"tests.dict": {"handlers": ["out"], "level": "INFO", "propagate": False}},
        }
    )
    logger = logging.getLogger("tests.dict")
    logger.info("outside")
    in_request(lambda: logger.info("inside"))
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("[req:- trace:-] outside")
    assert lines[1].endswith("[req:k3v9q2xd trace:4bf92f3577b34da6a3ce929d0e0e4736] inside")
    logger.handlers.clear()


def test_outside_request_is_read_only() -> None:
    """Users can read what records outside a request carry, but not change it for everyone."""
    install_record_factory()
    with pytest.raises(TypeError):
        OUTSIDE_REQUEST["extra"] = 1  # type: ignore[index]
    assert "extra" not in OUTSIDE_REQUEST
    record = make_record()
    assert vars(record)["request_id"] == OUTSIDE_REQUEST["request_id"] == "-"
    assert logging.Formatter(LOG_FORMAT).format(record).endswith("[req:- trace:-] hello you")


def span_ids(span: trace.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def test_records_in_a_span_outside_a_request_carry_its_trace(provider: TracerProvider) -> None:
    """A record made in a span that is no request (a job, a startup hook) carries its ids."""
    install_record_factory()
    tracer = provider.get_tracer("tests.records")
    with tracer.start_as_current_span("nightly job") as job:
        first = make_record()
        second = make_record()
        with tracer.start_as_current_span("step") as step:
            inner = make_record()
    after = make_record()
    for record, span in ((first, job), (second, job), (inner, step)):
        trace_hex, span_hex = span_ids(span)
        assert vars(record)["trace_id"] == vars(record)["otelTraceID"] == trace_hex
        assert vars(record)["span_id"] == vars(record)["otelSpanID"] == span_hex
        assert vars(record)["trace_sampled"] is vars(record)["otelTraceSampled"] is True
        assert vars(record)["request_id"] == "-"
        assert vars(record)["requestIdPrefix"] == ""
    assert vars(after)["trace_id"] == "-"
    assert vars(after)["otelTraceID"] == "0"
    assert {name: vars(after)[name] for name in OUTSIDE_REQUEST} == dict(OUTSIDE_REQUEST)
    # Inside a request the request's ids win over any span.
    with tracer.start_as_current_span("around"):
        assert vars(in_request(make_record))["trace_id"] == IDS.trace_id


def test_records_in_an_unsampled_span_are_marked() -> None:
    """A span that records nothing still gives its ids, marked as not sampled."""
    install_record_factory()
    unsampled = TracerProvider(sampler=ALWAYS_OFF)
    with unsampled.get_tracer("tests.records").start_as_current_span("dropped") as span:
        record = make_record()
    trace_hex, span_hex = span_ids(span)
    assert (vars(record)["trace_id"], vars(record)["span_id"]) == (trace_hex, span_hex)
    assert vars(record)["trace_sampled"] is vars(record)["otelTraceSampled"] is False


def test_records_in_a_thread_with_its_own_span(provider: TracerProvider) -> None:
    """Each thread's records carry the span current in that thread, never another's."""
    install_record_factory()
    tracer = provider.get_tracer("tests.records")
    found: dict[str, tuple[str, str]] = {}
    expected: dict[str, tuple[str, str]] = {}
    barrier = threading.Barrier(4)

    def work(name: str) -> None:
        with tracer.start_as_current_span(name) as span:
            expected[name] = span_ids(span)
            barrier.wait()
            for _ in range(200):
                record = make_record()
                seen = (vars(record)["trace_id"], vars(record)["span_id"])
                if seen != expected[name]:
                    found[name] = seen
                    return
            found[name] = seen

    threads = [threading.Thread(target=work, args=(f"job-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == expected


def test_beside_otel_logging_installed_first(provider: TracerProvider) -> None:
    """OpenTelemetry's logging instrumentation installed before ours keeps its ids in a span."""
    otel_logging = LoggingInstrumentor()
    otel_logging.instrument(tracer_provider=provider, set_logging_format=False)
    try:
        install_record_factory()
        with provider.get_tracer("tests.records").start_as_current_span("job") as span:
            record = make_record()
        outside = make_record()
    finally:
        uninstall_record_factory()
        otel_logging.uninstrument()
    trace_hex, span_hex = span_ids(span)
    assert vars(record)["otelTraceID"] == vars(record)["trace_id"] == trace_hex
    assert vars(record)["otelSpanID"] == vars(record)["span_id"] == span_hex
    assert vars(record)["otelTraceSampled"] is True
    assert vars(record)["request_id"] == "-"
    assert vars(outside)["otelTraceID"] == "0"


def test_filter_in_a_span_outside_a_request(provider: TracerProvider) -> None:
    """The logging.Filter gives a record made in a non-request span that span's ids."""
    record = logging.LogRecord("tests.filter", logging.INFO, __file__, 1, "m", (), None)
    with provider.get_tracer("tests.records").start_as_current_span("job") as span:
        assert RequestIdFilter().filter(record)
    assert (vars(record)["trace_id"], vars(record)["span_id"]) == span_ids(span)
    assert vars(record)["request_id"] == "-"


def test_records_read_the_context_the_api_reads() -> None:
    """The record factory's shortcut to the current context answers as the API does."""
    from opentelemetry import context as otel_context  # noqa: PLC0415
    from opentelemetry import trace  # noqa: PLC0415

    from otel_reqid_logging.records import _get_current_context  # noqa: PLC0415

    assert _get_current_context() is otel_context.get_current()
    span = trace.NonRecordingSpan(
        trace.SpanContext(trace_id=7, span_id=9, is_remote=False, trace_flags=trace.TraceFlags(1))
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        assert _get_current_context() is otel_context.get_current()
        assert trace.get_current_span(_get_current_context()) is span
    finally:
        otel_context.detach(token)
    assert _get_current_context() is otel_context.get_current()
