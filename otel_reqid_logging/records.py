"""Log records carry the ids of the running request: a record factory and a logging.Filter.

Every record gets the same attributes, inside a request or not, so that a format string
naming them never fails:

``request_id``, ``trace_id``, ``span_id``, ``trace_sampled``, ``requestIdPrefix`` and
OpenTelemetry's ``otelTraceID``, ``otelSpanID``, ``otelTraceSampled``, ``otelServiceName``.

Inside a request they are the request's ids; inside a child span of the request,
``span_id`` and OpenTelemetry's span names are that span's. Outside one but inside an
OpenTelemetry span (a background task, a job, a thread with a span) the trace and span
ids are that span's, and ``request_id`` is ``-`` (or what the app set in the ancestor's
``request_id`` ContextVar); outside any span they are ``OUTSIDE_REQUEST``.

A caller's ``extra=`` value for one of these names wins for that record: while the ids
are on, ``Logger.makeRecord`` applies those after the record is made, and the other
names as the standard library does.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from opentelemetry import trace

from ._context import RECORD_ATTRIBUTES
from ._record_values import (
    MAKE_RECORD,
    OUTSIDE_REQUEST,
    RECORD_CLASS,
    IdsDictLogRecord,
    IdsLogRecord,
    IdsRecordFactory,
    attributes_here,
    class_active,
    set_class_active,
    set_other_make_record,
    set_outside,
)

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

_lock = threading.Lock()
_NAMES = frozenset(RECORD_ATTRIBUTES)

_Installed = IdsRecordFactory | type[IdsLogRecord] | type[IdsDictLogRecord]
_installed: _Installed | None = None


def _set_outside(name: str, value: Any) -> None:
    """Change one attribute of records made outside any request."""
    set_outside(name, value)


def _set_active(
    factory: IdsRecordFactory | type[IdsLogRecord] | type[IdsDictLogRecord], active: bool
) -> None:
    if isinstance(factory, IdsRecordFactory):
        factory.active = active
    else:
        set_class_active(active)


# -- Logger.makeRecord: where a caller's extra= meets the record's attributes ------------
#
# The standard library refuses an ``extra`` key the record already has (KeyError
# "Attempt to overwrite"). The factory puts our names on every record, so while the ids
# are on, makeRecord hands the standard library's the extras without our names and
# applies ours afterwards: the caller's value wins for that record, and every other
# name (``message``, ``asctime``, LogRecord's own) still meets the standard library's
# own check. It also gives the ids to a record whose factory chain no longer reaches
# ours (another library put back the factory it found before ours). Above the standard
# library's own makeRecord, the one installed is _record_values.MAKE_RECORD: it makes
# the record class's records itself when a call has no ``extra`` and hands every other
# call to _make_record below.

_MakeRecord = Any  # Logger.makeRecord's type, as typeshed has it, is not needed here
_stdlib_make_record: _MakeRecord = logging.Logger.makeRecord
_previous_make_record: _MakeRecord = None
_make_record_active = False
# The module's namespace: with the standard library's own makeRecord below us, ours
# reads the current factory where logging keeps it (``_logRecordFactory``), as the
# standard library's does, instead of calling getLogRecordFactory() for every record.
_logging_names = vars(logging)
_FACTORY_NAME = "_logRecordFactory"


def _give_ids(record: logging.LogRecord) -> None:
    """Give the ids to a record that lacks them (made by a chain without our factory)."""
    attributes = record.__dict__
    if _make_record_active and "request_id" not in attributes:
        attributes.update(attributes_here())


def _make_record_with_extra(  # noqa: PLR0917  (Logger.makeRecord's signature)
    logger: logging.Logger,
    name: str,
    level: int,
    fn: str,
    lno: int,
    msg: object,
    args: Any,
    exc_info: Any,
    func: str | None,
    extra: Any,
    sinfo: str | None,
) -> logging.LogRecord:
    """``makeRecord`` with ``extra``: the caller's values for our names win."""
    if not _make_record_active or _NAMES.isdisjoint(extra):
        ours = None
    else:
        ours = {key: extra[key] for key in extra if key in _NAMES}
        extra = {key: extra[key] for key in extra if key not in _NAMES}
    record: logging.LogRecord = _previous_make_record(
        logger, name, level, fn, lno, msg, args, exc_info, func, extra, sinfo
    )
    _give_ids(record)
    if ours:
        record.__dict__.update(ours)
    return record


def _make_record(  # noqa: PLR0917  (Logger.makeRecord's signature)
    self: logging.Logger,
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
    """``Logger.makeRecord`` while the ids are on, for what ``MAKE_RECORD`` does not make."""
    if extra is None:
        factory = _logging_names[_FACTORY_NAME]
        record: logging.LogRecord = factory(name, level, fn, lno, msg, args, exc_info, func, sinfo)
    elif _NAMES.isdisjoint(extra):  # extras of other names (aiohttp's access line): as is
        record = _previous_make_record(
            self, name, level, fn, lno, msg, args, exc_info, func, extra, sinfo
        )
        factory = _logging_names[_FACTORY_NAME]
    else:
        return _make_record_with_extra(
            self, name, level, fn, lno, msg, args, exc_info, func, extra, sinfo
        )
    if factory is not _installed:
        _give_ids(record)
    return record


def _make_record_wrapping(  # noqa: PLR0917  (Logger.makeRecord's signature)
    self: logging.Logger,
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
    """``Logger.makeRecord`` while the ids are on, above any other makeRecord.

    The public way round: used when the standard library keeps its factory elsewhere
    or something else replaced ``Logger.makeRecord`` before us.
    """
    if extra is not None:
        return _make_record_with_extra(
            self, name, level, fn, lno, msg, args, exc_info, func, extra, sinfo
        )
    record: logging.LogRecord = _previous_make_record(
        self, name, level, fn, lno, msg, args, exc_info, func, None, sinfo
    )
    _give_ids(record)
    return record


def _reads_factory_directly(previous: _MakeRecord) -> bool:
    """Tell whether ours may read the factory where the standard library keeps it."""
    return (
        previous is _stdlib_make_record
        and _logging_names.get(_FACTORY_NAME, _NOT_THERE) is logging.getLogRecordFactory()
    )


_NOT_THERE = object()


def _install_make_record() -> None:
    """Put ours in place of ``Logger.makeRecord`` (once: again, it only switches it on)."""
    global _previous_make_record, _make_record_active  # noqa: PLW0603  (one per process)
    _make_record_active = True
    if _previous_make_record is not None:
        # Ours is in place, or in the chain of a makeRecord set after it: wrapping
        # that one again would call ourselves.
        return
    current = vars(logging.Logger)["makeRecord"]
    _previous_make_record = current
    if _reads_factory_directly(current):
        # Records of our record class made at once; the rest through _make_record.
        set_other_make_record(_make_record)
        chosen = MAKE_RECORD
    else:
        chosen = _make_record_wrapping
    logging.Logger.makeRecord = chosen  # type: ignore[method-assign]


def _uninstall_make_record() -> None:
    """Put back the makeRecord that was there, or pass through if one came after ours."""
    global _previous_make_record, _make_record_active  # noqa: PLW0603
    _make_record_active = False
    if vars(logging.Logger)["makeRecord"] in {MAKE_RECORD, _make_record_wrapping}:
        logging.Logger.makeRecord = _previous_make_record  # type: ignore[method-assign]
        _previous_make_record = None


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
        _install_make_record()
        if _installed is not None:
            _set_active(_installed, True)
            if _reaches_ours():
                return
        previous = logging.getLogRecordFactory()
        if previous is logging.LogRecord:
            _installed = RECORD_CLASS
            _set_active(_installed, True)
        else:
            _installed = IdsRecordFactory(previous)
        logging.setLogRecordFactory(_installed)


def uninstall_record_factory() -> None:
    """Stop adding the ids, without cutting out factories installed after ours."""
    global _installed  # noqa: PLW0603
    with _lock:
        _uninstall_make_record()
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
    return _installed.active if isinstance(_installed, IdsRecordFactory) else class_active()


class RequestIdFilter(logging.Filter):
    """A logging.Filter adding the ids, for logging set up with ``dictConfig``.

    Attach it to a handler so that records from every logger reach the format with the
    ids. Attributes a record already has (from the factory, or a caller's ``extra=``)
    are left as they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the ids of the running request to ``record``; never drops a record."""
        attributes = record.__dict__
        if not _NAMES.issubset(attributes):
            # A caller's extra= value for one of the names is kept: only the missing
            # ones are added.
            for name, value in attributes_here().items():
                attributes.setdefault(name, value)
        return True
