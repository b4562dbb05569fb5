"""The caller's trace context, read from the client-supplied headers that are well-formed.

OpenTelemetry's propagators log a warning that quotes each malformed ``tracestate`` or
``baggage`` member, so a client could write text of its choosing into the server's log
on every request. Those headers are checked against the W3C grammars first; one that does
not parse is dropped whole (W3C Trace Context allows discarding a malformed tracestate),
and nothing about it is logged.
"""

from __future__ import annotations

import re

from aiohttp import web
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagate import extract, get_global_textmap
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "HEADERS_GETTER",
    "NOTHING_INCOMING",
    "acceptable_baggage",
    "acceptable_tracestate",
    "incoming_context",
]

_MAX_HEADER_BYTES = 8192
_MAX_TRACESTATE_MEMBERS = 32
_MAX_BAGGAGE_MEMBERS = 180
_MAX_BAGGAGE_MEMBER_BYTES = 4096

# W3C Trace Context, tracestate: key "=" value, members split by "," with optional spaces.
_TRACESTATE_KEY = (
    r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
)
_TRACESTATE_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_TRACESTATE_MEMBER = re.compile(f"({_TRACESTATE_KEY})={_TRACESTATE_VALUE}")

# W3C Baggage: key OWS "=" OWS value, then ";"-separated properties of the same shape
# (or a bare key); keys are RFC 7230 tokens, values baggage-octets.
_OWS = r"[ \t]*"
_BAGGAGE_KEY = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_BAGGAGE_VALUE = r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_PAIR = f"{_OWS}{_BAGGAGE_KEY}{_OWS}={_OWS}{_BAGGAGE_VALUE}{_OWS}"
_BAGGAGE_MEMBER = re.compile(f"{_PAIR}(?:;(?:{_PAIR}|{_OWS}{_BAGGAGE_KEY}{_OWS}))*")
_SPLIT = re.compile(r"[ \t]*,[ \t]*")


def acceptable_tracestate(value: str) -> bool:
    """Tell whether a tracestate header parses without a single complaint."""
    if len(value) > _MAX_HEADER_BYTES or not value.isascii():
        return False
    members = [m for m in _SPLIT.split(value.strip(" \t")) if m]
    if len(members) > _MAX_TRACESTATE_MEMBERS:
        return False
    keys = set()
    for member in members:
        match = _TRACESTATE_MEMBER.fullmatch(member)
        if match is None or match[1] in keys:
            return False
        keys.add(match[1])
    return True


def acceptable_baggage(value: str) -> bool:
    """Tell whether a baggage header parses without a single complaint."""
    if len(value) > _MAX_HEADER_BYTES or not value.isascii():
        return False
    members = [m for m in _SPLIT.split(value.strip(" \t")) if m]
    if len(members) > _MAX_BAGGAGE_MEMBERS:
        return False
    return all(
        len(member) <= _MAX_BAGGAGE_MEMBER_BYTES and _BAGGAGE_MEMBER.fullmatch(member)
        for member in members
    )


_CHECKED = {"tracestate": acceptable_tracestate, "baggage": acceptable_baggage}


class _HeadersGetter(Getter[web.BaseRequest]):
    """Lets OpenTelemetry propagators read request headers, minus malformed ones.

    A ``tracestate`` or ``baggage`` header that does not parse is withheld, so that the
    propagators never log the client's text.
    """

    def get(self, carrier: web.BaseRequest, key: str) -> list[str] | None:
        values = carrier.headers.getall(key, None)
        if not values:
            return None
        check = _CHECKED.get(key.lower())
        if check is not None and not all(check(value) for value in values):
            return None
        return list(values)

    def keys(self, carrier: web.BaseRequest) -> list[str]:
        return list(carrier.headers.keys())


HEADERS_GETTER = _HeadersGetter()

# What W3C trace-context extraction gives for a request without its headers: a context
# with nothing in it (the trace-context propagator starts from an empty one).
NOTHING_INCOMING = Context()


def _w3c_headers(propagator: TextMapPropagator) -> tuple[str, ...] | None:
    """Return the headers the propagator reads, if it is (made of) the W3C ones only.

    None for any other propagator: what it reads, and what it returns when its
    headers are missing, are its own business.
    """
    members = getattr(propagator, "_propagators", [propagator])
    if not members or type(members[0]) is not TraceContextTextMapPropagator:
        return None
    names: list[str] = []
    for member in members:
        if type(member) is TraceContextTextMapPropagator:
            names.append("traceparent")
        elif type(member) is W3CBaggagePropagator:
            names.append("baggage")
        else:
            return None
    return tuple(names)


class _IncomingContext:
    """Extracts the caller's context from a request, skipping the propagators when the
    request carries none of the W3C headers they would read (most requests)."""

    __slots__ = ("_headers", "_propagator")

    def __init__(self) -> None:
        self._propagator: TextMapPropagator | None = None
        self._headers: tuple[str, ...] | None = None

    def __call__(self, request: web.BaseRequest) -> Context:
        propagator = get_global_textmap()
        if propagator is not self._propagator:
            self._headers = _w3c_headers(propagator)
            self._propagator = propagator
        names = self._headers
        if names is not None:
            headers = request.headers
            for name in names:
                if name in headers:
                    break
            else:
                return NOTHING_INCOMING
        return extract(request, getter=HEADERS_GETTER)


incoming_context = _IncomingContext()
