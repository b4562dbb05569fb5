"""Access lines for gunicorn's access logger: ids in the text when its handlers print only it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pythonjsonlogger.json import JsonFormatter

from otel_reqid_logging._message_ids import message_with_ids
from otel_reqid_logging.records import LOG_FORMAT, OUTSIDE_REQUEST

IDS = {"request_id": "k3v9q2xd", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
LINE = '127.0.0.1 [01/Dec/2026:08:00:00 +0000] "GET / HTTP/1.1" 200 2 "-" "curl"'


@pytest.fixture
def gunicorn_access() -> Iterator[logging.Logger]:
    """gunicorn's access logger, with its handlers put back after the test."""
    logger = logging.getLogger("gunicorn.access")
    saved = list(logger.handlers)
    logger.handlers.clear()
    yield logger
    logger.handlers[:] = saved


def handler(formatter: logging.Formatter | None) -> logging.Handler:
    made = logging.NullHandler()
    made.setFormatter(formatter)
    return made


def test_message_only_handlers_get_the_ids_in_the_text(gunicorn_access: logging.Logger) -> None:
    """gunicorn's own formatter (`%(message)s`): the line starts with the ids."""
    gunicorn_access.addHandler(handler(logging.Formatter("%(message)s")))

    assert message_with_ids(gunicorn_access.name, LINE, IDS) == (
        f"[req:k3v9q2xd trace:4bf92f3577b34da6a3ce929d0e0e4736] {LINE}"
    )


@pytest.mark.parametrize(
    "formatter",
    [logging.Formatter(LOG_FORMAT), JsonFormatter("%(message)s")],
    ids=["format-names-ids", "json"],
)
def test_handlers_that_show_the_ids_get_the_line_unchanged(
    gunicorn_access: logging.Logger, formatter: logging.Formatter
) -> None:
    """A format naming the ids, or a JSON formatter (ids as fields): no second copy."""
    gunicorn_access.addHandler(handler(logging.Formatter("%(message)s")))
    gunicorn_access.addHandler(handler(formatter))

    assert message_with_ids(gunicorn_access.name, LINE, IDS) == LINE


def test_a_changed_handler_is_noticed(gunicorn_access: logging.Logger) -> None:
    """The answer is kept per logger, but a new handler (gunicorn's reload) changes it."""
    gunicorn_access.addHandler(handler(logging.Formatter("%(message)s")))
    assert message_with_ids(gunicorn_access.name, LINE, IDS) != LINE

    gunicorn_access.handlers[:] = [handler(logging.Formatter(LOG_FORMAT))]

    assert message_with_ids(gunicorn_access.name, LINE, IDS) == LINE


def test_other_loggers_and_lines_outside_requests_are_unchanged(
    gunicorn_access: logging.Logger,
) -> None:
    """aiohttp's own access logger keeps its line, and so does a line with no request ids."""
    gunicorn_access.addHandler(handler(logging.Formatter("%(message)s")))
    aiohttp_access = logging.getLogger("aiohttp.access")

    assert message_with_ids(aiohttp_access.name, LINE, IDS) == LINE
    assert message_with_ids(gunicorn_access.name, LINE, OUTSIDE_REQUEST) == LINE


@pytest.mark.parametrize(
    ("fmt", "shows_ids"),
    [("%(message)s", False), (LOG_FORMAT, True), ("%(asctime)s %(trace_id)s %(message)s", True)],
    ids=["message-only", "log-format", "trace-id"],
)
def test_without_loggings_format_attribute_the_format_is_tried(
    gunicorn_access: logging.Logger, monkeypatch: pytest.MonkeyPatch, fmt: str, shows_ids: bool
) -> None:
    """Without ``Formatter._fmt`` (where the standard library keeps the format string;
    here deleted from the formatter), a record with marked ids is formatted to tell
    whether the handler shows them: the line gets the ids in its text exactly when not."""
    formatter = logging.Formatter(fmt)
    monkeypatch.delattr(formatter, "_fmt")
    gunicorn_access.addHandler(handler(formatter))

    expected = (
        LINE if shows_ids else f"[req:k3v9q2xd trace:4bf92f3577b34da6a3ce929d0e0e4736] {LINE}"
    )
    assert message_with_ids(gunicorn_access.name, LINE, IDS) == expected
