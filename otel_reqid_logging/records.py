"""Log records carry the ids of the running request: a record factory and a logging.Filter.

Every record gets the same attributes, inside a request or not, so that a format string
naming them never fails:

``request_id``, ``trace_id``, ``span_id``, ``trace_sampled``, ``requestIdPrefix`` and
OpenTelemetry's ``otelTraceID``, ``otelSpanID``, ``otelTraceSampled``, ``otelServiceName``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ._context import _ids

__all__ = [
    "LOG_FORMAT",
    "OUTSIDE_REQUEST",
    "RequestIdFilter",
    "install_record_factory",
    "record_factory_installed",
    "set_service_name",
    "uninstall_record_factory",
]

LOG_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [req:%(request_id)s trace:%(trace_id)s] %(message)s"
)

# What records made outside any request carry. OpenTelemetry's names take the values
# its logging instrumentation writes outside a span.
OUTSIDE_REQUEST: dict[str, Any] = {
    "request_id": "-",
    "trace_id": "-",
    "span_id": "-",
    "trace_sampled": False,
    "requestIdPrefix": "",
    "otelTraceID": "0",
    "otelSpanID": "0",
    "otelTraceSampled": False,
    "otelServiceName": "",
}

_RecordFactory = Callable[..., logging.LogRecord]
_lock = threading.Lock()


class _IdsRecordFactory:
    """A record factory that adds the ids to what the previous factory made.

    Removing it while a factory installed later still calls it cannot unlink it from
    that factory's chain; it then stays in place and only passes records through.
    """

    __slots__ = ("active", "previous")

    def __init__(self, previous: _RecordFactory) -> None:
        self.previous = previous
        self.active = True

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        if self.active:
            ids = _ids.get()
            record.__dict__.update(OUTSIDE_REQUEST if ids is None else ids.record_attrs)
        return record


_installed: _IdsRecordFactory | None = None


def install_record_factory() -> None:
    """Make every log record carry the ids; calling it again changes nothing."""
    global _installed  # noqa: PLW0603  (the one factory of this process)
    with _lock:
        if _installed is not None:
            _installed.active = True
            return
        _installed = _IdsRecordFactory(logging.getLogRecordFactory())
        logging.setLogRecordFactory(_installed)


def uninstall_record_factory() -> None:
    """Stop adding the ids, without cutting out factories installed after ours."""
    global _installed  # noqa: PLW0603
    with _lock:
        if _installed is None:
            return
        if logging.getLogRecordFactory() is _installed:
            logging.setLogRecordFactory(_installed.previous)
            _installed = None
        else:
            _installed.active = False


def set_service_name(name: str) -> None:
    """Set ``otelServiceName`` for records made outside a request."""
    OUTSIDE_REQUEST["otelServiceName"] = name


def record_factory_installed() -> bool:
    """Tell whether records made now get the ids from the factory."""
    return _installed is not None and _installed.active


class RequestIdFilter(logging.Filter):
    """A logging.Filter adding the ids, for logging set up with ``dictConfig``.

    Attach it to a handler so that records from every logger reach the format with the
    ids. Attributes a record already has (from the factory) are left as they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the ids of the running request to ``record``; never drops a record."""
        if "request_id" not in record.__dict__:
            ids = _ids.get()
            record.__dict__.update(OUTSIDE_REQUEST if ids is None else ids.record_attrs)
        return True
