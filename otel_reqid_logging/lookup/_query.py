"""Turn what the user typed (an id, or a whole pasted log line) into a validated query."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Query", "QueryError", "parse_query", "shown"]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_INVALID_TRACE_ID = "0" * 32
# What a record made outside a request carries instead of ids: never an id to look up.
_OUTSIDE = frozenset({"-", "0", "", _INVALID_TRACE_ID})
_OUTSIDE_MESSAGE = (
    "that line was logged outside a request (its ids are '-'): it belongs to no trace"
)
# `req:ID` / `trace:HEX` as this library writes them, `request_id=` / `trace_id=` as
# key=value formats (OpenTelemetry's logging instrumentation among them) do, JSON keys, and
# the response header line `X-Request-ID: ID` that `curl -i` shows.
_TOKEN = re.compile(
    r"(?<![\w.-])(?P<key>req|request_id|trace|trace_id|(?i:x-request-id))\"?\s*[:=]\s*\"?"
    r"(?P<value>[^\s\[\]\"',;(){}]*)"
)
# A W3C traceparent or traceresponse value: version, trace id, span id, flags.
_TRACE_CONTEXT = re.compile(
    r"(?<![\w-])[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}(?![\w-])"
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


def parse_query(text: str) -> Query:
    """Find the ids in `text`: `req:`/`trace:` tokens of a log line, or one bare id."""
    tokens = [(m["key"].lower(), m["value"]) for m in _TOKEN.finditer(text)]
    if tokens:
        return _from_tokens(tokens)
    context = _TRACE_CONTEXT.search(text.lower())
    if context is not None and _is_trace_id(context["trace"]):
        return Query(trace_id=context["trace"])
    bare = text.strip()
    if not bare:
        raise QueryError("no id given")
    if bare == "-":
        raise QueryError(_OUTSIDE_MESSAGE)
    if any(ch.isspace() for ch in bare):
        raise QueryError(
            "no req:<id> or trace:<id> in that log line; pass the request id or trace id alone"
        )
    if bare == _INVALID_TRACE_ID:
        raise QueryError(
            "the all-zero trace id is not a trace: that record was logged outside a request"
        )
    if _is_trace_id(bare):
        return Query(trace_id=bare.lower())
    if _REQUEST_ID.fullmatch(bare):
        return Query(request_id=bare)
    raise QueryError(
        f"{shown(bare)} is neither a trace id (32 hex digits) "
        "nor a request id (1-64 of A-Z a-z 0-9 . _ -)"
    )


def _from_tokens(tokens: list[tuple[str, str]]) -> Query:
    request_id = next(
        (
            v
            for k, v in tokens
            if k.startswith(("req", "x-request")) and v != "-" and _REQUEST_ID.fullmatch(v)
        ),
        None,
    )
    # A record made outside a span carries trace id "0" or all zeros: not an id.
    trace_id = next(
        (v.lower() for k, v in tokens if k.startswith("trace") and _is_trace_id(v)), None
    )
    if request_id is None and trace_id is None:
        if all(v in _OUTSIDE for _, v in tokens):
            raise QueryError(_OUTSIDE_MESSAGE)
        found = ", ".join(f"{k}:{shown(v)}" for k, v in tokens[:4])
        raise QueryError(f"the log line has id tokens, but none is a valid id: {found}")
    return Query(request_id=request_id, trace_id=trace_id)


def _is_trace_id(value: str) -> bool:
    lowered = value.lower()
    return bool(_TRACE_ID.fullmatch(lowered)) and lowered != _INVALID_TRACE_ID
