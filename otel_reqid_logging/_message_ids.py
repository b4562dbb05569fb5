"""The ids in the text of access lines whose handlers print nothing but the message.

gunicorn formats its access log with ``%(message)s`` alone, so the ids that aiohttp's
access line carries as record attributes never reach the text gunicorn writes. For
gunicorn's access logger with such handlers, the line itself starts with the ids, in the
``[req:ID trace:HEX]`` form of the library's log format. Handlers that show the ids
themselves (a format naming them, a JSON formatter) get the line unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

__all__ = ["message_with_ids"]

_GUNICORN_ACCESS = "gunicorn.access"
# A format naming one of these shows the ids already.
_ID_FIELDS = ("request_id", "trace_id", "requestIdPrefix", "otelTraceID")
# What the ids of a probe record are, to see whether a format shows them: no id looks so.
_MARK = "\x00ids\x00"
# Per logger: the (handler, formatter) pairs last seen, and whether they print only the
# message. gunicorn sets its handlers up once (and again on reload); this is read per line.
_seen: dict[logging.Logger, tuple[tuple[object, ...], bool]] = {}


def _format_shows_ids(formatter: logging.Formatter) -> bool:
    """Tell whether a plain ``logging.Formatter`` shows the ids.

    Reads the format where the standard library keeps it (``Formatter._fmt``); without it,
    formats a record whose ids are a marker and looks for the marker. A format that cannot
    format that record counts as showing no ids: the text gets them, at worst twice.
    """
    fmt = getattr(formatter, "_fmt", None)
    if isinstance(fmt, str):
        return any(field in fmt for field in _ID_FIELDS)
    probe = logging.makeLogRecord({"msg": "", **dict.fromkeys(_ID_FIELDS, _MARK)})
    try:
        return _MARK in formatter.format(probe)
    except Exception:
        return False


def _prints_message_only(logger: logging.Logger) -> bool:
    pairs = tuple((handler, handler.formatter) for handler in logger.handlers)
    cached = _seen.get(logger)
    if cached is not None and cached[0] == pairs:
        return cached[1]
    answer = bool(pairs) and all(
        formatter is None
        or (type(formatter) is logging.Formatter and not _format_shows_ids(formatter))
        for _, formatter in pairs
    )
    _seen[logger] = (pairs, answer)
    return answer


def message_with_ids(logger_name: str, message: str, ids: Mapping[str, object]) -> str:
    """``message``, led by the ids when the logger is gunicorn's and would not show them."""
    if logger_name != _GUNICORN_ACCESS or ids["request_id"] == "-":
        return message
    if not _prints_message_only(logging.getLogger(logger_name)):
        return message
    return f"[req:{ids['request_id']} trace:{ids['trace_id']}] {message}"
