"""What a log record made here and now carries: the machinery behind ``records``.

Package-internal API. ``attributes_here()`` is what the record factory gives a record
made at this point (``structlog``, the access line's filter and ``RequestIdFilter`` use
it); ``IdsLogRecord`` and ``IdsRecordFactory`` are the two shapes of the factory;
``MAKE_RECORD`` is the library's ``Logger.makeRecord``, which makes the record class's
records itself; ``OUTSIDE_REQUEST`` and ``set_outside()`` the values outside any request.

Where the values come from:

- inside a request, the request's ids (``RequestIds``); inside a child span of the
  request, ``span_id``, ``otelSpanID``, ``otelTraceID`` and ``otelTraceSampled`` are that
  span's, as OpenTelemetry's logging instrumentation writes them;
- outside a request, the current span's ids if there is one, and the ancestor's
  ``request_id`` ContextVar when the app set it (a background job);
- else ``OUTSIDE_REQUEST``.

Two private names of OpenTelemetry make this cheap, each with a public fallback chosen
by ``resolve_context_readers()`` (docs/reference.md, "Private names this library uses").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN

from ._context import RECORD_ATTRIBUTES, RecordValues, RequestIds, _ids, request_id

__all__ = [
    "MAKE_RECORD",
    "OUTSIDE_REQUEST",
    "RECORD_CLASS",
    "USE_TEMPLATES",
    "IdsDictLogRecord",
    "IdsLogRecord",
    "IdsRecordFactory",
    "RecordFactory",
    "attributes_here",
    "class_active",
    "made_in_request",
    "resolve_context_readers",
    "set_class_active",
    "set_other_make_record",
    "set_outside",
    "values_here",
]

RecordFactory = Callable[..., logging.LogRecord]

# The two ContextVars' ``get``, bound once: ``_ids.get()`` would make a bound method for
# every record (CPython does not specialize loading a ContextVar's method).
_get_ids: Callable[[], RequestIds | None] = _ids.get
_get_app_id: Callable[[], str | None] = request_id.get

# What records made outside any request carry. OpenTelemetry's names take the values
# its logging instrumentation writes outside a span. Only set_outside() changes it.
_outside = RecordValues(
    request_id="-",
    trace_id="-",
    span_id="-",
    trace_sampled=False,
    requestIdPrefix="",
    otelTraceID="0",
    otelSpanID="0",
    otelTraceSampled=False,
    otelServiceName="",
)
_outside_attrs: dict[str, Any] = _outside._asdict()
OUTSIDE_REQUEST: Mapping[str, Any] = MappingProxyType(_outside_attrs)
# The same values as a plain tuple, which the record class unpacks.
_outside_values: tuple[Any, ...] = tuple(_outside)

# LogRecord's own attributes, and whether records start from a dict holding every key
# (IdsDictLogRecord): CPython keeps an instance's attributes inline, without a dict, for
# at most 30 keys per class, and LogRecord has 21 since Python 3.12 (``taskName``).
_BASE_NAMES: tuple[str, ...] = tuple(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
_INLINE_KEYS_MAX = 30
USE_TEMPLATES = len(_BASE_NAMES) + len(RECORD_ATTRIBUTES) >= _INLINE_KEYS_MAX

_Values = tuple[Any, ...]
_Template = dict[str, Any] | None


def _template(values: _Values) -> _Template:
    """Return a whole record's dict with ``values`` (LogRecord's own keys None), if used."""
    if not USE_TEMPLATES:
        return None
    template: dict[str, Any] = dict.fromkeys(_BASE_NAMES)
    template.update(zip(RECORD_ATTRIBUTES, values, strict=True))
    return template


_outside_template = _template(_outside_values)
# The span and app-set request id (the ancestor's ContextVar) the last record outside a
# request was made with, and the values made from them: a job or a startup hook logs
# many lines in one span, so its ids are formatted once. One tuple, so that threads
# swapping it never pair a span with another span's values.
_outside_cache: tuple[object, str | None, _Values, _Template] = (
    None,
    None,
    _outside_values,
    _outside_template,
)
# The same for the last child span of a request a record was made in.
_child_cache: tuple[object, RequestIds | None, _Values, _Template] = (None, None, (), None)


def set_outside(name: str, value: Any) -> None:
    """Change one attribute of records made outside any request."""
    global _outside, _outside_values, _outside_template, _outside_cache  # noqa: PLW0603  (read for every record outside a request)
    _outside = _outside._replace(**{name: value})
    _outside_attrs[name] = value
    _outside_values = tuple(_outside)
    _outside_template = _template(_outside_values)
    _outside_cache = (None, None, _outside_values, _outside_template)


def _context_getter() -> Callable[[], Context]:
    """Return the cheapest call that gives what ``otel_context.get_current()`` gives.

    With OpenTelemetry's default runtime context that is its ContextVar's own ``get``
    (``_RUNTIME_CONTEXT._current_context``: a C call, two Python calls less per record);
    when that private name is gone or holds something else, the API's ``get_current``.
    """
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if isinstance(variable, ContextVar) and variable.get() is otel_context.get_current():
        return variable.get
    return otel_context.get_current


def _span_key() -> str | None:
    """Return the key under which OpenTelemetry keeps the current span in a Context.

    Found through the public API, so that a record reads the span with one dict lookup
    instead of ``trace.get_current_span()`` (an ABC isinstance check and two calls);
    None when OpenTelemetry no longer keeps it so, and then the API is asked.
    """
    probe = trace.NonRecordingSpan(INVALID_SPAN.get_span_context())
    context = trace.set_span_in_context(probe, Context())
    if not isinstance(context, dict):  # read below with dict.get
        return None
    keys = [key for key, value in context.items() if value is probe]
    if len(keys) != 1 or trace.get_current_span(context) is not probe:
        return None
    return keys[0]


def _span_by_api(context: Context, _key: str | None = None) -> object:
    """Return the span current in ``context``, or None, as the API finds it."""
    span = trace.get_current_span(context)
    return None if span is INVALID_SPAN else span


_ReadSpan = Callable[[Context, str | None], object]
current_context: Callable[[], Context] = otel_context.get_current
_SPAN_KEY: str | None = None
# ``_read_span(context, _SPAN_KEY)`` is the span current in ``context``, or None: with the
# key found, dict.get itself, called unbound (``context.get`` on a dict subclass would
# make a bound method for every record); else the API.
_read_span: _ReadSpan = _span_by_api


def resolve_context_readers() -> None:
    """Choose how records read the current context and span (at import; tests again)."""
    global current_context, _SPAN_KEY, _read_span, _outside_cache, _child_cache  # noqa: PLW0603
    current_context = _context_getter()
    _SPAN_KEY = _span_key()
    _read_span = _span_by_api if _SPAN_KEY is None else dict.get  # type: ignore[assignment]
    _outside_cache = (None, None, _outside_values, _outside_template)
    _child_cache = (None, None, (), None)


resolve_context_readers()


def _made_outside(span: object, app_id: str | None) -> tuple[_Values, _Template]:
    """Make (and keep for the next record) the values of a record made outside a request.

    In an OpenTelemetry span that is not a request (a background task, a job, a thread
    with a span) they carry its ids, as OpenTelemetry's logging instrumentation writes
    them; ``app_id``, the ancestor's ``request_id`` ContextVar set by the app, gives
    ``request_id`` and the prefix.
    """
    global _outside_cache  # noqa: PLW0603  (see its definition)
    values = _outside
    span_context = None if span is None else _valid_context_of(span)
    if span_context is not None:
        # %-formatting, as in RequestIds: the cheapest way to these fixed-width ids.
        trace_hex = "%032x" % span_context.trace_id  # noqa: UP031
        span_hex = "%016x" % span_context.span_id  # noqa: UP031
        flag = span_context.trace_flags.sampled
        values = values._replace(
            trace_id=trace_hex,
            span_id=span_hex,
            trace_sampled=flag and span.is_recording(),  # type: ignore[attr-defined]
            otelTraceID=trace_hex,
            otelSpanID=span_hex,
            otelTraceSampled=flag,
        )
    if app_id is not None:
        values = values._replace(request_id=app_id, requestIdPrefix=f"[req:{app_id}] ")
    if values is _outside:
        made, template = _outside_values, _outside_template
    else:
        made = tuple(values)
        template = _template(made)
    _outside_cache = (span, app_id, made, template)
    return made, template


def _valid_context_of(span: object) -> trace.SpanContext | None:
    """Return the span context of ``span`` if it is a valid one."""
    get_span_context = getattr(span, "get_span_context", None)
    if get_span_context is None:
        return None
    span_context: trace.SpanContext = get_span_context()
    return span_context if span_context.is_valid else None


def _request_made(ids: RequestIds) -> tuple[_Values, _Template]:
    """Return the request's own values (and template, made on first use)."""
    template = ids.record_template
    if template is None and USE_TEMPLATES:
        template = ids.record_template = _template(ids.record_values)
    return ids.record_values, template


def made_in_request(ids: RequestIds) -> tuple[_Values, _Template]:
    """Return the values of a record made in a request, in a context not yet met.

    In the request's own span they are the request's values (and the context is kept
    on ``ids``, so that the next record there takes them at once); in a child span the
    span's ids replace OpenTelemetry's names and ``span_id``: ``request_id``, the prefix
    and ``trace_id`` stay the request's.
    """
    global _child_cache  # noqa: PLW0603  (see its definition)
    context = current_context()
    span = _read_span(context, _SPAN_KEY)
    if span is None:
        return _request_made(ids)
    cached_span, cached_ids, cached_values, cached_template = _child_cache
    if span is cached_span and ids is cached_ids:
        return cached_values, cached_template
    span_context = _valid_context_of(span)
    if span_context is None:
        return _request_made(ids)
    span_hex = "%016x" % span_context.span_id  # noqa: UP031
    if span_hex == ids.span_id:
        made = _request_made(ids)
        ids.context = context  # after the template: a thread seeing it finds both
        return made
    values = tuple(
        RecordValues(*ids.record_values)._replace(
            span_id=span_hex,
            otelTraceID="%032x" % span_context.trace_id,  # noqa: UP031
            otelSpanID=span_hex,
            otelTraceSampled=span_context.trace_flags.sampled,
        )
    )
    template = _template(values)
    _child_cache = (span, ids, values, template)
    return values, template


def values_here() -> tuple[Any, ...]:
    """Return the record values of a record made here and now (``IdsLogRecord`` inlines it)."""
    ids = _get_ids()
    if ids is not None:
        if current_context() is ids.context:
            return ids.record_values
        return made_in_request(ids)[0]
    span = _read_span(current_context(), _SPAN_KEY)
    app_id = _get_app_id()
    cached_span, cached_id, values, _ = _outside_cache
    if span is cached_span and app_id is cached_id:
        return values
    return _made_outside(span, app_id)[0]


def attributes_here() -> Mapping[str, Any]:
    """Return the attributes the record factory gives a record made here and now."""
    values = values_here()
    if values is _outside_values:
        return OUTSIDE_REQUEST
    ids = _get_ids()
    if ids is not None and values is ids.record_values:
        return ids.record_attrs
    return dict(zip(RECORD_ATTRIBUTES, values, strict=True))


class IdsRecordFactory:
    """A record factory that adds the ids to what the previous factory made.

    Removing it while a factory installed later still calls it cannot unlink it from
    that factory's chain; it then stays in place and only passes records through.
    """

    __slots__ = ("active", "previous")

    def __init__(self, previous: RecordFactory) -> None:
        self.previous = previous
        self.active = True

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        if self.active:
            record.__dict__.update(attributes_here())
        return record


_init_record = logging.LogRecord.__init__


class IdsLogRecord(logging.LogRecord):
    """A LogRecord carrying the ids: the factory itself when the previous one is LogRecord.

    The common case, and the hot one: being the record class instead of a function
    wrapping it saves a call per record. Up to Python 3.11, LogRecord's 20 attributes and
    our 9 stay within the 30 that CPython keeps inline in the instance (no dict until
    something asks for ``__dict__``), and setting them one by one uses its specialized
    attribute stores. From 3.12 (``taskName``, a 21st) they do not, and
    ``IdsDictLogRecord`` takes its place. Like ``IdsRecordFactory`` it only passes records
    through once switched off (``set_class_active``).
    """

    previous: RecordFactory = logging.LogRecord

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
            # Without ``**`` the call takes CPython's fast path.
            _init_record(self, name, level, pathname, lineno, msg, args, exc_info, func, sinfo)
        if _class_active:
            # values_here(), inlined: a call less for every record.
            ids = _get_ids()
            if ids is not None:
                if current_context() is ids.context:  # the request's own span: no lookup
                    values = ids.record_values
                else:
                    values = made_in_request(ids)[0]
            else:
                context = current_context()
                span = _read_span(context, _SPAN_KEY)
                app_id = _get_app_id()
                cached_span, cached_id, values, _ = _outside_cache
                if span is not cached_span or app_id is not cached_id:
                    values = _made_outside(span, app_id)[0]
            # The fields of RecordValues, in its order (test_records checks each one).
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


# Whether IdsLogRecord adds the ids: a module global rather than a class attribute,
# because CPython reads it faster, and it is read for every record.
_class_active = True


def set_class_active(active: bool) -> None:
    """Switch ``IdsLogRecord`` on or off (off: plain records)."""
    global _class_active, _fast_class  # noqa: PLW0603  (see their definitions)
    _class_active = active
    _fast_class = RECORD_CLASS if active else None


def class_active() -> bool:
    """Tell whether ``IdsLogRecord`` adds the ids."""
    return _class_active


class IdsDictLogRecord(logging.LogRecord):
    """``IdsLogRecord`` for Pythons where LogRecord's attributes and ours pass 30 (3.12+).

    There a record cannot keep its attributes inline: the 30th one set converts them
    into a dict, entry by entry. Starting the record from a copy of a dict that already
    holds every key (ours with their values, LogRecord's None until its ``__init__``
    sets them) costs less than that conversion, and needs no resizing on the way.
    """

    previous: RecordFactory = logging.LogRecord

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
        if _class_active:
            # IdsLogRecord's choice of values, for their template.
            ids = _get_ids()
            if ids is not None:
                if current_context() is ids.context:
                    template = ids.record_template or _request_made(ids)[1]
                else:
                    template = made_in_request(ids)[1]
            else:
                context = current_context()
                span = _read_span(context, _SPAN_KEY)
                app_id = _get_app_id()
                cached_span, cached_id, _, template = _outside_cache
                if span is not cached_span or app_id is not cached_id:
                    template = _made_outside(span, app_id)[1]
            self.__dict__ = template.copy()  # type: ignore[union-attr]  # never None here
        if kwargs:
            _init_record(
                self, name, level, pathname, lineno, msg, args, exc_info, func, sinfo, **kwargs
            )
        else:
            _init_record(self, name, level, pathname, lineno, msg, args, exc_info, func, sinfo)


#: The record class the factory installs on top of LogRecord.
RECORD_CLASS: type[IdsLogRecord] | type[IdsDictLogRecord] = (
    IdsDictLogRecord if USE_TEMPLATES else IdsLogRecord
)


# -- The library's Logger.makeRecord, for records of the record class ---------------------
#
# Calling a class goes through C (type.__call__, then __init__ found and run in a frame
# of its own, with a dict for ``**kwargs``), where a Python function calling another
# pushes the frame in place. So while the standard library's factory is the record
# class, adding the ids, and a call has no ``extra``, the library's makeRecord does the
# class's work itself: allocate the record, run LogRecord.__init__ on it, give it the
# ids. Every other call goes to ``records``' makeRecord (``set_other_make_record``).

_new_record = object.__new__
# Where the standard library keeps the factory (records.py chooses these functions only
# when it does keep it there), read as its own makeRecord reads it.
_logging_names = vars(logging)
_FACTORY_NAME = "_logRecordFactory"


def _make_ids_record(  # noqa: PLR0917  (Logger.makeRecord's signature)
    logger: logging.Logger,
    name: str,
    level: int,
    fn: str,
    lno: int,
    msg: object,
    args: Any,
    exc_info: Any,
    func: str | None = None,
    extra: Any = None,
    sinfo: str | None = None,
) -> logging.LogRecord:
    """``Logger.makeRecord`` making ``IdsLogRecord``'s records as calling it would."""
    if extra is not None or _logging_names[_FACTORY_NAME] is not _fast_class:
        return _other_make_record(
            logger, name, level, fn, lno, msg, args, exc_info, func, extra, sinfo
        )
    record: IdsLogRecord = _new_record(IdsLogRecord)
    _init_record(record, name, level, fn, lno, msg, args, exc_info, func, sinfo)
    # IdsLogRecord's choice of values (values_here() inlined).
    ids = _get_ids()
    if ids is not None:
        values = ids.record_values if current_context() is ids.context else made_in_request(ids)[0]
    else:
        context = current_context()
        span = _read_span(context, _SPAN_KEY)
        app_id = _get_app_id()
        cached_span, cached_id, values, _ = _outside_cache
        if span is not cached_span or app_id is not cached_id:
            values = _made_outside(span, app_id)[0]
    (
        record.request_id,
        record.trace_id,
        record.span_id,
        record.trace_sampled,
        record.requestIdPrefix,
        record.otelTraceID,
        record.otelSpanID,
        record.otelTraceSampled,
        record.otelServiceName,
    ) = values
    return record


def _make_dict_record(  # noqa: PLR0917  (Logger.makeRecord's signature)
    logger: logging.Logger,
    name: str,
    level: int,
    fn: str,
    lno: int,
    msg: object,
    args: Any,
    exc_info: Any,
    func: str | None = None,
    extra: Any = None,
    sinfo: str | None = None,
) -> logging.LogRecord:
    """``Logger.makeRecord`` making ``IdsDictLogRecord``'s records as calling it would."""
    if extra is not None or _logging_names[_FACTORY_NAME] is not _fast_class:
        return _other_make_record(
            logger, name, level, fn, lno, msg, args, exc_info, func, extra, sinfo
        )
    record: IdsDictLogRecord = _new_record(IdsDictLogRecord)
    # IdsDictLogRecord's choice of template.
    ids = _get_ids()
    if ids is not None:
        if current_context() is ids.context:
            template = ids.record_template or _request_made(ids)[1]
        else:
            template = made_in_request(ids)[1]
    else:
        context = current_context()
        span = _read_span(context, _SPAN_KEY)
        app_id = _get_app_id()
        cached_span, cached_id, _, template = _outside_cache
        if span is not cached_span or app_id is not cached_id:
            template = _made_outside(span, app_id)[1]
    record.__dict__ = template.copy()  # type: ignore[union-attr]  # never None here
    _init_record(record, name, level, fn, lno, msg, args, exc_info, func, sinfo)
    return record


#: The library's ``Logger.makeRecord`` where the standard library reads its factory from
#: ``logging._logRecordFactory``; it hands what it does not make to the one given to
#: ``set_other_make_record``.
MAKE_RECORD: Callable[..., logging.LogRecord] = (
    _make_dict_record if USE_TEMPLATES else _make_ids_record
)
_other_make_record: Callable[..., logging.LogRecord] = logging.Logger.makeRecord
# The factory whose records MAKE_RECORD makes itself: the record class while it adds the
# ids, else nothing (one identity test for both).
_fast_class: object = RECORD_CLASS


def set_other_make_record(make_record: Callable[..., logging.LogRecord]) -> None:
    """Set the makeRecord that ``MAKE_RECORD`` hands every other call to."""
    global _other_make_record  # noqa: PLW0603  (one per process)
    _other_make_record = make_record
