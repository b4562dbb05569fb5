"""Turn what the user typed (an id, or a whole pasted log line) into a validated query."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "JSON_REQUEST_KEYS",
    "JSON_SPAN_KEYS",
    "JSON_TRACE_KEYS",
    "LineIds",
    "Query",
    "QueryError",
    "cut_json_ids",
    "first_string",
    "json_ids",
    "line_ids",
    "parse_query",
    "shown",
]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_INVALID_TRACE_ID = "0" * 32
# What a record made outside a request carries instead of ids: never an id to look up.
_OUTSIDE = frozenset({"-", "0", "", _INVALID_TRACE_ID})
_OUTSIDE_MESSAGE = (
    "that line was logged outside a request (its ids are '-'): it belongs to no trace"
)
_ALL_ZERO_MESSAGE = "the all-zero trace id is not a trace: that record was logged outside a request"
# The library's own prefix: `[req:ID trace:HEX]` of LOG_FORMAT and of gunicorn's access
# lines (`[req:ID trace:HEX span:HEX]` where a format adds the span, as the demo's does),
# `[req:ID]` of requestIdPrefix. It comes before the message, so only the first one
# counts, and only ahead of the line's first double quote: what follows may be a client's
# text (a path, a User-Agent), which can look like a prefix too.
_PREFIX_START = "[req:"
_PREFIX = re.compile(
    r"\[req:(?P<req>[^\s\]]*)(?: trace:(?P<trace>[^\s\]]*)(?: span:(?P<span>[^\s\]]*))?)?"
)
# `request_id=ID` / `trace_id=HEX` of key=value formats (structlog's renderers,
# OpenTelemetry's logging format), read only where a line has no prefix of ours.
_KEY_VALUE = re.compile(
    r"(?<![\w.-])(?P<key>request_id|trace_id|span_id|otelTraceID|otelSpanID)="
    r"'?(?P<value>[^\s\[\]\"',;(){}]*)'?"
)
# Double-quoted parts of a line: in an access line the request line, Referer and User-Agent.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
# What `curl -i` shows of a response: one header line.
_HEADER = re.compile(
    r"\s*(?P<key>x-request-id|traceresponse|traceparent)\s*:\s*(?P<value>\S*)\s*",
    re.IGNORECASE,
)
# A W3C traceparent or traceresponse value: version, trace id, span id, flags.
_TRACE_CONTEXT = re.compile(r"[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
#: JSON fields that hold the ids: the record names, then other formatters' spellings.
JSON_REQUEST_KEYS = ("request_id", "requestId", "request.id")
JSON_TRACE_KEYS = ("trace_id", "otelTraceID", "traceId", "trace.id")
JSON_SPAN_KEYS = ("span_id", "otelSpanID", "spanId", "span.id")
# The tokens of JSON text, enough to read the top-level string fields of a cut line.
_JSON_TOKEN = re.compile(
    r'"(?P<string>(?:[^"\\]|\\.)*)"|(?P<mark>[{}\[\]:,])|(?P<open>")|[^\s"{}\[\]:,]+'
)
_SHOWN_LIMIT = 60


class QueryError(ValueError):
    """The input holds no usable id; the message is safe to print."""


@dataclass(frozen=True)
class Query:
    """What to look for: a trace id, a request id, or both (from one log line)."""

    request_id: str | None = None
    trace_id: str | None = None

    def describe(self) -> str:
        """Name the ids in words, for messages."""
        parts = []
        if self.request_id is not None:
            parts.append(f"request id {self.request_id}")
        if self.trace_id is not None:
            parts.append(f"trace id {self.trace_id}")
        return " / ".join(parts)


def shown(value: str) -> str:
    """Quote untrusted text for a message: control characters escaped, length bounded."""
    if len(value) > _SHOWN_LIMIT:
        return repr(value[:_SHOWN_LIMIT]) + "..."
    return repr(value)


@dataclass(frozen=True)
class LineIds:
    """The ids a log line carries where the library (or the log format) put them.

    Values are as written, unchecked: ``"-"`` or ``"0"`` where the line was logged
    outside a request. ``ambiguous`` names a key=value key the line gives two values.
    """

    request_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    ambiguous: str | None = None

    def query(self) -> Query | None:
        """The valid ids of the line, or None when it has none."""
        request_id = self.request_id
        if request_id is None or request_id == "-" or not _REQUEST_ID.fullmatch(request_id):
            request_id = None
        trace_id = self.trace_id.lower() if self.trace_id is not None else None
        if trace_id is not None and not _is_trace_id(trace_id):
            trace_id = None
        if request_id is None and trace_id is None:
            return None
        return Query(request_id=request_id, trace_id=trace_id)


def line_ids(text: str) -> LineIds | None:
    """The ids of a text log line: its prefix, else its key=value fields; None if neither.

    Text a client controls (a path, a User-Agent) may look like either; the prefix is
    read only where the library writes it (first, before the message), and key=value
    fields only outside double quotes, so such text is not taken for the line's ids.
    """
    head = text.split('"', 1)[0]
    at = head.find(_PREFIX_START)
    prefix = _PREFIX.match(head, at) if at >= 0 else None
    if prefix is not None:  # the pattern matches wherever "[req:" starts
        return LineIds(request_id=prefix["req"], trace_id=prefix["trace"], span_id=prefix["span"])
    found: dict[str, str] = {}
    ambiguous = None
    for match in _KEY_VALUE.finditer(_QUOTED.sub(" ", text)):
        key = match["key"].replace("otelTraceID", "trace_id").replace("otelSpanID", "span_id")
        value = match["value"]
        if found.setdefault(key, value) != value:
            ambiguous = ambiguous or key
    if not found:
        return None
    if ambiguous is not None:
        return LineIds(ambiguous=ambiguous)
    return LineIds(
        request_id=found.get("request_id"),
        trace_id=found.get("trace_id"),
        span_id=found.get("span_id"),
    )


def cut_json_ids(text: str) -> LineIds | None:
    """The ids among the top-level fields of a JSON line cut short, written before the cut."""
    fields: dict[str, str] = {}
    depth = 0
    key = last = None
    for token in _JSON_TOKEN.finditer(text):
        string, mark = token["string"], token["mark"]
        if token["open"] is not None:  # a string cut short: nothing after it is read
            break
        if string is not None:
            try:
                value = json.loads(f'"{string}"')
            except ValueError:
                break
            if depth == 1 and key is not None:
                fields.setdefault(key, value)
                key = None
            else:
                last = value
        elif mark in {"{", "["}:
            depth += 1
        elif mark in {"}", "]"}:
            depth -= 1
        elif mark == ":":
            key, last = last, None
        else:
            key = last = None
    return json_ids(fields)


def json_ids(fields: Mapping[str, Any]) -> LineIds | None:
    """The ids of a JSON log line, from its top-level fields; None if it has none."""
    ids = LineIds(
        request_id=first_string(fields, JSON_REQUEST_KEYS),
        trace_id=first_string(fields, JSON_TRACE_KEYS),
        span_id=first_string(fields, JSON_SPAN_KEYS),
    )
    return None if ids == LineIds() else ids


def parse_query(text: str) -> Query:
    """Find the ids in `text`: a pasted log line (text or JSON), a header line, or one id."""
    ids = _pasted_line_ids(text)
    if ids is not None:
        return _from_line(ids)
    bare = text.strip()
    header = _HEADER.fullmatch(text)
    if header is not None:
        bare = header["value"]
    if not bare:
        raise QueryError("no id given")
    if bare == "-":
        raise QueryError(_OUTSIDE_MESSAGE)
    context = _TRACE_CONTEXT.fullmatch(bare.lower())
    if context is not None:
        if not _is_trace_id(context["trace"]):
            raise QueryError(_ALL_ZERO_MESSAGE)
        return Query(trace_id=context["trace"])
    if any(ch.isspace() for ch in bare):
        raise QueryError(
            "no [req:<id> trace:<id>] prefix or id field in that log line; "
            "pass the request id or trace id alone"
        )
    if bare == _INVALID_TRACE_ID:
        raise QueryError(_ALL_ZERO_MESSAGE)
    if _is_trace_id(bare):
        return Query(trace_id=bare.lower())
    if _REQUEST_ID.fullmatch(bare) and (header is None or header["key"].lower() == "x-request-id"):
        return Query(request_id=bare)
    raise QueryError(
        f"{shown(bare)} is neither a trace id (32 hex digits) "
        "nor a request id (1-64 of A-Z a-z 0-9 . _ -)"
    )


def _pasted_line_ids(text: str) -> LineIds | None:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            fields = json.loads(stripped)
        except ValueError:
            fields = None
        if isinstance(fields, dict):
            return json_ids(fields)
        if fields is None:
            return cut_json_ids(stripped)
    return line_ids(text)


def _from_line(ids: LineIds) -> Query:
    if ids.ambiguous is not None:
        raise QueryError(
            f"that line has two different {ids.ambiguous} values, so which is its own is "
            "unclear; pass the request id or trace id alone"
        )
    query = ids.query()
    if query is not None:
        return query
    written = [(k, v) for k, v in (("req", ids.request_id), ("trace", ids.trace_id)) if v]
    if all(v in _OUTSIDE for _, v in written):
        raise QueryError(_OUTSIDE_MESSAGE)
    found = ", ".join(f"{k}:{shown(v)}" for k, v in written)
    raise QueryError(f"the log line has id tokens, but none is a valid id: {found}")


def first_string(fields: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of ``keys`` whose field is a non-empty string: that string, or None."""
    for key in keys:
        value = fields.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _is_trace_id(value: str) -> bool:
    lowered = value.lower()
    return bool(_TRACE_ID.fullmatch(lowered)) and lowered != _INVALID_TRACE_ID
