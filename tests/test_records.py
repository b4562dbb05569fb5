"""The record factory and the logging.Filter."""

from __future__ import annotations

import io
import logging
import logging.config
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import ClientSession, web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.logging import LoggingInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from pytest_aiohttp import AiohttpClient, AiohttpServer

from otel_reqid_logging import (
    LOG_FORMAT,
    RequestIdAccessLogger,
    RequestIdFilter,
    RequestIdMiddleware,
    _record_values,
    install_record_factory,
    records,
    uninstall_record_factory,
)
from otel_reqid_logging._context import (
    RECORD_ATTRIBUTES,
    REQUEST_ID_KEY,
    RequestIds,
    _ids,
    request_id,
)
from otel_reqid_logging.records import OUTSIDE_REQUEST, _record_factory_installed
from tests.conftest import LineCollector

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


def test_the_librarys_make_record_makes_what_the_record_class_makes(
    provider: TracerProvider,
) -> None:
    """Logger.makeRecord builds the record class's records itself: the same records."""
    install_record_factory()
    assert vars(logging.Logger)["makeRecord"] is _record_values.MAKE_RECORD
    record_class = logging.getLogRecordFactory()
    assert record_class is _record_values.RECORD_CLASS
    arguments = ("tests.records", logging.INFO, __file__, 1, "hello %s", ("you",), None)

    def made_both_ways() -> tuple[logging.LogRecord, logging.LogRecord]:
        return make_record(), record_class(*arguments)

    with provider.get_tracer("tests.records").start_as_current_span("job") as job:
        in_span = made_both_ways()
    made = {"outside": made_both_ways(), "request": in_request(made_both_ways), "span": in_span}
    for by_logger, by_class in made.values():
        assert type(by_logger) is type(by_class)
        # The same attributes in the same order (the record's layout), the same ids.
        assert list(vars(by_logger)) == list(vars(by_class))
        assert {name: vars(by_logger)[name] for name in RECORD_ATTRIBUTES} == {
            name: vars(by_class)[name] for name in RECORD_ATTRIBUTES
        }
        assert by_logger.getMessage() == by_class.getMessage() == "hello you"
    assert vars(made["outside"][0])["request_id"] == "-"
    assert vars(made["request"][0])["request_id"] == IDS.request_id
    assert vars(made["span"][0])["span_id"] == span_ids(job)[1]

    # Switched off while another factory keeps ours in its chain: plain records both ways.
    def another_librarys(*args: Any) -> logging.LogRecord:
        return record_class(*args)

    logging.setLogRecordFactory(another_librarys)
    uninstall_record_factory()
    assert "request_id" not in vars(make_record())
    assert "request_id" not in vars(record_class(*arguments))


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

    from otel_reqid_logging._record_values import current_context as _get_current_context  # noqa: PLC0415

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


# -- A caller's extra= for our names -----------------------------------------------------


def test_the_record_class_sets_every_field_of_the_table() -> None:
    """Each attribute the record class sets is the value of its own field in RecordValues."""
    install_record_factory()
    ids = RequestIds(
        request_id="r", trace_id=1, span_id=2, sampled=True, sampled_flag=True, service_name="s"
    )
    distinct = tuple(f"value-of-{name}" for name in RECORD_ATTRIBUTES)
    ids.record_values = distinct
    server = trace.NonRecordingSpan(
        trace.SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=trace.TraceFlags(1))
    )
    context_token = otel_context.attach(trace.set_span_in_context(server))
    token = _ids.set(ids)
    try:
        first = make_record()  # meets the request's own span: its context is kept
        assert ids.context is otel_context.get_current()
        second = make_record()  # takes the request's values at once
    finally:
        _ids.reset(token)
        otel_context.detach(context_token)
    for record in (first, second):
        assert {name: vars(record)[name] for name in RECORD_ATTRIBUTES} == dict(
            zip(RECORD_ATTRIBUTES, distinct, strict=True)
        )


@pytest.mark.parametrize("name", RECORD_ATTRIBUTES)
def test_a_callers_extra_wins_for_its_record_and_never_raises(name: str) -> None:
    """extra= naming one of our attributes keeps the caller's value; the others are filled."""
    install_record_factory()
    logger = logging.getLogger("tests.records.extra")
    collector = LineCollector()
    logger.addHandler(collector)
    logger.setLevel(logging.INFO)
    try:
        logger.info("outside", extra={name: "callers"})
        in_request(lambda: logger.info("inside", extra={name: "callers"}))
    finally:
        logger.removeHandler(collector)
    outside, inside = collector.records
    expected_outside = {**OUTSIDE_REQUEST, name: "callers"}
    expected_inside = {**IDS.record_attrs, name: "callers"}
    assert {key: vars(outside)[key] for key in RECORD_ATTRIBUTES} == expected_outside
    assert {key: vars(inside)[key] for key in RECORD_ATTRIBUTES} == expected_inside


def test_the_standard_librarys_own_refusals_stay() -> None:
    """extra= for message, asctime or a LogRecord attribute still raises the stdlib's KeyError."""
    install_record_factory()
    logger = logging.getLogger("tests.records.extra")
    for name in ("message", "asctime", "lineno"):
        with pytest.raises(KeyError, match=f"Attempt to overwrite '{name}' in LogRecord"):
            logger.error("refused", extra={name: 1, "request_id": "mine"})


async def test_extra_in_a_handler_keeps_the_request_answering(
    aiohttp_client: AiohttpClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
) -> None:
    """A handler logging extra={"request_id": ...} gets its value on its line, not a 500."""

    async def order(request: web.Request) -> web.Response:
        logging.getLogger("tests.records.order").info(
            "order placed", extra={"request_id": "order-7", "otelSpanID": "mine"}
        )
        return web.Response(text=request[REQUEST_ID_KEY])

    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    app.router.add_get("/order", order)
    client = await aiohttp_client(app)
    response = await client.get("/order")
    assert response.status == 200
    short_id = await response.text()
    (record,) = [r for r in log_lines.records if r.getMessage() == "order placed"]
    assert vars(record)["request_id"] == "order-7"
    assert vars(record)["otelSpanID"] == "mine"
    # The names the caller did not give are the request's.
    assert vars(record)["requestIdPrefix"] == f"[req:{short_id}] "
    (server_span,) = exporter.get_finished_spans()
    trace_hex, span_hex = span_ids(server_span)  # type: ignore[arg-type]
    assert vars(record)["trace_id"] == vars(record)["otelTraceID"] == trace_hex
    assert vars(record)["span_id"] == span_hex


def test_the_filter_keeps_a_callers_extra_and_fills_the_rest() -> None:
    """With only the Filter (no factory), a caller's request_id stays and the rest are added."""
    record = logging.getLogger("tests.filter").makeRecord(
        "tests.filter", logging.INFO, __file__, 1, "m", (), None, extra={"request_id": "mine"}
    )
    in_request(lambda: RequestIdFilter().filter(record))
    assert vars(record)["request_id"] == "mine"
    assert vars(record)["trace_id"] == IDS.trace_id
    assert vars(record)["requestIdPrefix"] == "[req:k3v9q2xd] "


def test_install_and_uninstall_restore_make_record() -> None:
    """Logger.makeRecord is the standard library's again after uninstalling, as is the factory."""
    make_record_before = vars(logging.Logger)["makeRecord"]
    factory_before = logging.getLogRecordFactory()
    install_record_factory()
    assert vars(logging.Logger)["makeRecord"] is not make_record_before
    install_record_factory()
    uninstall_record_factory()
    assert vars(logging.Logger)["makeRecord"] is make_record_before
    assert logging.getLogRecordFactory() is factory_before
    logger = logging.getLogger("tests.records.extra")
    with pytest.raises(KeyError):
        # Nothing of ours is left: the standard library refuses what it always refused.
        logger.makeRecord("n", logging.INFO, "p", 1, "m", (), None, extra={"name": "x"})
    assert "request_id" not in vars(make_record())


def test_ours_survive_otel_logging_putting_back_what_it_found(provider: TracerProvider) -> None:
    """OpenTelemetry's LoggingInstrumentor first, ours second, theirs removed: ids stay."""
    otel_logging = LoggingInstrumentor()
    otel_logging.instrument(tracer_provider=provider, set_logging_format=False)
    try:
        install_record_factory()
    finally:
        # It sets back the factory it found (LogRecord), cutting ours out of the chain.
        otel_logging.uninstrument()
    assert logging.getLogRecordFactory() is logging.LogRecord
    inside = in_request(make_record)
    with provider.get_tracer("tests.records").start_as_current_span("job") as span:
        in_span = make_record()
    assert vars(inside)["request_id"] == "k3v9q2xd"
    assert vars(inside)["trace_id"] == IDS.trace_id
    assert (vars(in_span)["trace_id"], vars(in_span)["span_id"]) == span_ids(span)
    assert vars(in_span)["otelSpanID"] == span_ids(span)[1]
    uninstall_record_factory()
    assert "request_id" not in vars(make_record())


# -- Records carry the current span ------------------------------------------------------


async def test_records_in_a_child_span_carry_its_span_id(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
) -> None:
    """In a child span span_id and otelSpanID are its own, the rest the request's; access SERVER."""
    tracer = provider.get_tracer("tests.records")
    log = logging.getLogger("tests.records.child")

    async def work(request: web.Request) -> web.Response:
        log.info("in the server span")
        with tracer.start_as_current_span("charge card"):
            log.info("in the child span")
            with tracer.start_as_current_span("call bank"):
                log.info("in the grandchild span")
        log.info("back in the server span")
        return web.Response(text="ok")

    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    app.router.add_get("/work", work)
    server = await aiohttp_server(app, access_log_class=RequestIdAccessLogger)
    async with ClientSession() as session, session.get(server.make_url("/work")) as response:
        assert response.status == 200
        short_id = response.headers["X-Request-ID"]
    spans = {span.name: span for span in exporter.get_finished_spans()}
    server_span = spans["GET /work"]
    trace_hex, server_hex = span_ids(server_span)  # type: ignore[arg-type]
    by_message = {record.getMessage(): record for record in log_lines.records}
    expected_span = {
        "in the server span": server_hex,
        "in the child span": span_ids(spans["charge card"])[1],  # type: ignore[arg-type]
        "in the grandchild span": span_ids(spans["call bank"])[1],  # type: ignore[arg-type]
        "back in the server span": server_hex,
    }
    for message, span_hex in expected_span.items():
        attributes = vars(by_message[message])
        assert attributes["span_id"] == attributes["otelSpanID"] == span_hex, message
        assert attributes["request_id"] == short_id
        assert attributes["requestIdPrefix"] == f"[req:{short_id}] "
        assert attributes["trace_id"] == attributes["otelTraceID"] == trace_hex
        assert attributes["trace_sampled"] is attributes["otelTraceSampled"] is True
    (access,) = [r for r in log_lines.records if r.name == "aiohttp.access"]
    assert vars(access)["span_id"] == vars(access)["otelSpanID"] == server_hex
    assert vars(access)["request_id"] == short_id


# -- Private names, and the public way round each ----------------------------------------


@pytest.fixture
def re_resolved() -> Iterator[None]:
    """Let a test re-resolve how records read the context; resolve again afterwards."""
    yield
    _record_values.resolve_context_readers()


def records_in_request_and_span(provider: TracerProvider) -> None:
    """Check, with the readers now resolved, the ids of records in a span and a request."""
    install_record_factory()
    tracer = provider.get_tracer("tests.records")
    with tracer.start_as_current_span("job") as job:
        in_job = make_record()
    assert (vars(in_job)["trace_id"], vars(in_job)["span_id"]) == span_ids(job)
    server = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=int(IDS.trace_id, 16),
            span_id=int(IDS.span_id, 16),
            is_remote=False,
            trace_flags=trace.TraceFlags(1),
        )
    )
    token = otel_context.attach(trace.set_span_in_context(server))
    try:
        in_server = in_request(make_record)
        with tracer.start_as_current_span("child") as child:
            in_child = in_request(make_record)
    finally:
        otel_context.detach(token)
    assert vars(in_server)["span_id"] == IDS.span_id
    assert vars(in_child)["span_id"] == vars(in_child)["otelSpanID"] == span_ids(child)[1]
    assert vars(in_child)["request_id"] == "k3v9q2xd"
    assert make_record().__dict__["trace_id"] == "-"


def test_without_opentelemetrys_runtime_contextvar(
    monkeypatch: pytest.MonkeyPatch, re_resolved: None, provider: TracerProvider
) -> None:
    """With _RUNTIME_CONTEXT._current_context gone, records read the API's get_current()."""
    assert _record_values.current_context is not otel_context.get_current  # the shortcut
    with monkeypatch.context() as patch:
        patch.delattr(otel_context._RUNTIME_CONTEXT, "_current_context")
        _record_values.resolve_context_readers()
    assert _record_values.current_context is otel_context.get_current
    records_in_request_and_span(provider)


def test_without_the_span_key(
    monkeypatch: pytest.MonkeyPatch, re_resolved: None, provider: TracerProvider
) -> None:
    """If a Context stops holding the span under one key, records ask get_current_span()."""
    assert _record_values._SPAN_KEY is not None
    real = trace.set_span_in_context

    def two_keys(span: trace.Span, context: otel_context.Context | None = None) -> Any:
        # A stand-in for an OpenTelemetry release that keeps the span otherwise.
        return otel_context.set_value("another", span, real(span, context))

    with monkeypatch.context() as patch:
        patch.setattr(trace, "set_span_in_context", two_keys)
        _record_values.resolve_context_readers()
    assert _record_values._SPAN_KEY is None
    records_in_request_and_span(provider)


def test_without_loggings_factory_variable(
    monkeypatch: pytest.MonkeyPatch, provider: TracerProvider
) -> None:
    """With logging._logRecordFactory gone, ours wraps the standard library's makeRecord."""
    # A stand-in for a standard library keeping the factory elsewhere, for the install.
    kept = [logging.getLogRecordFactory()]
    with monkeypatch.context() as patch:
        patch.delattr(logging, "_logRecordFactory")
        patch.setattr(logging, "getLogRecordFactory", lambda: kept[0])
        patch.setattr(logging, "setLogRecordFactory", lambda factory: kept.__setitem__(0, factory))
        install_record_factory()
    logging.setLogRecordFactory(kept[0])
    assert logging.getLogRecordFactory() is records._installed
    assert vars(logging.Logger)["makeRecord"] is records._make_record_wrapping
    records_in_request_and_span(provider)
    logger = logging.getLogger("tests.records.extra")
    collector = LineCollector()
    logger.addHandler(collector)
    try:
        in_request(lambda: logger.warning("w", extra={"request_id": "mine"}))
    finally:
        logger.removeHandler(collector)
    (record,) = collector.records
    assert (vars(record)["request_id"], vars(record)["trace_id"]) == ("mine", IDS.trace_id)
    uninstall_record_factory()
    assert vars(logging.Logger)["makeRecord"] is records._stdlib_make_record
