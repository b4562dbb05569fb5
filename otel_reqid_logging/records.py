"""Log records carry the ids of the running request: a record factory and a logging.Filter.

Every record gets the same attributes, inside a request or not, so that a format string
naming them never fails:

``request_id``, ``trace_id``, ``span_id``, ``trace_sampled``, ``requestIdPrefix`` and
OpenTelemetry's ``otelTraceID``, ``otelSpanID``, ``otelTraceSampled``, ``otelServiceName``.

Inside a request they are the request's ids. Outside one but inside an OpenTelemetry span
(a background task, a job, a thread with a span) the trace and span ids are that span's,
and ``request_id`` is ``-``; outside any span they are ``OUTSIDE_REQUEST``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, ClassVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span

from ._context import RECORD_ATTRIBUTES, _ids

__all__ = [
    "LOG_FORMAT",
    "OUTSIDE_REQUEST",
    "RequestIdFilter",
    "install_record_factory",
    "uninstall_record_factory",
]

LOG_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [req:%(request_id)s trace:%(trace_id)s] %(message)s"
)


# What records made outside any request carry. OpenTelemetry's names take the values
# its logging instrumentation writes outside a span. Only this module changes it (the
# service name), through _set_outside; users see it read-only as OUTSIDE_REQUEST.
_outside: dict[str, Any] = {
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
OUTSIDE_REQUEST: Mapping[str, Any] = MappingProxyType(_outside)
# The same values in the order of RECORD_ATTRIBUTES, which the record class unpacks.
_outside_values: tuple[Any, ...] = tuple(_outside[name] for name in RECORD_ATTRIBUTES)


def _set_outside(name: str, value: Any) -> None:
    """Change one attribute of records made outside any request."""
    global _outside_values, _span_cache  # noqa: PLW0603  (read for every record outside a request)
    _outside[name] = value
    _outside_values = tuple(_outside[name] for name in RECORD_ATTRIBUTES)
    _span_cache = (INVALID_SPAN, _outside_values)


_RecordFactory = Callable[..., logging.LogRecord]
_lock = threading.Lock()


def _span_key() -> str | None:
    """Return the key under which OpenTelemetry keeps the current span in a Context.

    Found through the public API, so that a record reads the span with one dict lookup
    instead of ``trace.get_current_span()`` (whose ABC isinstance check costs ~150 ns);
    the tests fail if OpenTelemetry stops keeping it so.
    """
    keys = list(trace.set_span_in_context(INVALID_SPAN, Context()))
    return keys[0] if len(keys) == 1 else None


_SPAN_KEY = _span_key()


def _context_getter() -> Callable[[], Context]:
    """Return the cheapest call that gives what ``otel_context.get_current()`` gives.

    With the SDK's default runtime context that is its ContextVar's own ``get`` (a C
    call, two Python calls less per record); else its ``get_current``, else the API's
    function. The tests check that each answers as the API does.
    """
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if isinstance(variable, ContextVar):
        return variable.get
    return getattr(runtime, "get_current", otel_context.get_current)


_get_current_context: Callable[[], Context] = _context_getter()

# The span the last record outside a request was made in, and the values made from it: a
# job or a startup hook logs many lines in one span, so its ids are formatted once. One
# tuple, so that threads swapping it never pair a span with another span's values.
_span_cache: tuple[object, tuple[Any, ...]] = (INVALID_SPAN, _outside_values)


def _values_outside_request() -> tuple[Any, ...]:
    """Return the record values for a record made outside any request.

    Inside an OpenTelemetry span that is not a request (a background task, a job, a
    thread with a span) they carry that span's ids, as OpenTelemetry's logging
    instrumentation writes them; ``request_id`` keeps the outside marker.
    """
    span = _get_current_context().get(_SPAN_KEY)  # type: ignore[arg-type]
    if span is None:
        return _outside_values
    cached_span, values = _span_cache
    if span is cached_span:
        return values
    return _values_of_span(span)


def _values_of_span(span: object) -> tuple[Any, ...]:
    """Make (and keep for the next record) the record values of a span's ids."""
    global _span_cache  # noqa: PLW0603  (see its definition)
    values = _outside_values
    if isinstance(span, Span):
        context = span.get_span_context()
        if context.is_valid:
            # %-formatting, as in RequestIds: the cheapest way to these fixed-width ids.
            trace_hex = "%032x" % context.trace_id  # noqa: UP031
            span_hex = "%016x" % context.span_id  # noqa: UP031
            flag = context.trace_flags.sampled
            outside = _outside
            values = (
                outside["request_id"],
                trace_hex,
                span_hex,
                flag and span.is_recording(),
                outside["requestIdPrefix"],
                trace_hex,
                span_hex,
                flag,
                outside["otelServiceName"],
            )
    _span_cache = (span, values)
    return values


def _current_attributes() -> Mapping[str, Any]:
    """Return the attributes the record factory gives a record made here and now."""
    ids = _ids.get()
    if ids is not None:
        return ids.record_attrs
    values = _values_outside_request()
    if values is _outside_values:
        return _outside
    return dict(zip(RECORD_ATTRIBUTES, values, strict=True))


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
            record.__dict__.update(_current_attributes())
        return record


_init_record = logging.LogRecord.__init__


class _IdsLogRecord(logging.LogRecord):
    """A LogRecord carrying the ids: the factory itself when the previous one is LogRecord.

    The common case, and the hot one: being the record class instead of a function
    wrapping it saves a call per record, and setting the attributes one by one in a
    fixed order keeps them in the instance's compact storage instead of its dict.
    Like ``_IdsRecordFactory`` it only passes records through once switched off
    (``_class_active``).
    """

    previous: ClassVar[_RecordFactory] = logging.LogRecord

    def __init__(  # noqa: PLR0917  (LogRecord's own signature)
        self,
        name: str,
        level: int,
        pathname: str,
        lineno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        sinfo: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            _init_record(
                self, name, level, pathname, lineno, msg, args, exc_info, func, sinfo, **kwargs
            )
        else:
            # Without ``**`` the call takes CPython's fast path (~0.2 µs less per record).
            _init_record(self, name, level, pathname, lineno, msg, args, exc_info, func, sinfo)
        if _class_active:
            ids = _ids.get()
            if ids is not None:
                values = ids.record_values
            else:
                # _values_outside_request(), inlined: a call less for every such record.
                span = _get_current_context().get(_SPAN_KEY)  # type: ignore[arg-type]
                cached_span, values = _span_cache
                if span is not cached_span:
                    # A span the last record was not made in, or none at all.
                    values = _outside_values if span is None else _values_of_span(span)
            # In the order of RECORD_ATTRIBUTES, as _outside_values and RequestIds keep them.
            (
                self.request_id,
                self.trace_id,
                self.span_id,
                self.trace_sampled,
                self.requestIdPrefix,
                self.otelTraceID,
                self.otelSpanID,
                self.otelTraceSampled,
                self.otelServiceName,
            ) = values


# Whether _IdsLogRecord adds the ids: a module global rather than a class attribute,
# because Python 3.11 reads it ~80 ns faster, and it is read for every record.
_class_active = True

_installed: _IdsRecordFactory | type[_IdsLogRecord] | None = None


def _set_active(factory: _IdsRecordFactory | type[_IdsLogRecord], active: bool) -> None:
    global _class_active  # noqa: PLW0603  (see its definition)
    if isinstance(factory, _IdsRecordFactory):
        factory.active = active
    else:
        _class_active = active


def _service_name() -> str:
    """Return ``service.name`` of the global tracer provider, or "" without an SDK."""
    resource = getattr(trace.get_tracer_provider(), "resource", None)
    attributes = getattr(resource, "attributes", None) or {}
    return str(attributes.get("service.name", ""))


def _reaches_ours() -> bool:
    """Tell whether the current factory chain still runs ours, by making one record."""
    probe = logging.getLogRecordFactory()(__name__, logging.DEBUG, __file__, 0, "", (), None)
    return "request_id" in probe.__dict__


def install_record_factory() -> None:
    """Make every log record carry the ids; calling it again changes nothing.

    ``otelServiceName`` outside a request is the global tracer provider's service name
    at this moment. If another factory put back what it found and so dropped ours from
    the chain, calling this again puts ours back.
    """
    global _installed  # noqa: PLW0603  (the one factory of this process)
    with _lock:
        _set_outside("otelServiceName", _service_name())
        if _installed is not None:
            _set_active(_installed, True)
            if _reaches_ours():
                return
        previous = logging.getLogRecordFactory()
        if previous is logging.LogRecord:
            _installed = _IdsLogRecord
            _set_active(_installed, True)
        else:
            _installed = _IdsRecordFactory(previous)
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
            _set_active(_installed, False)


def _record_factory_installed() -> bool:
    """Tell whether records made now get the ids from the factory."""
    if _installed is None:
        return False
    return _installed.active if isinstance(_installed, _IdsRecordFactory) else _class_active


class RequestIdFilter(logging.Filter):
    """A logging.Filter adding the ids, for logging set up with ``dictConfig``.

    Attach it to a handler so that records from every logger reach the format with the
    ids. Attributes a record already has (from the factory) are left as they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the ids of the running request to ``record``; never drops a record."""
        if "request_id" not in record.__dict__:
            record.__dict__.update(_current_attributes())
        return True
