"""The record factory and the logging.Filter."""

from __future__ import annotations

import io
import logging
import logging.config
from typing import Any

import pytest

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
