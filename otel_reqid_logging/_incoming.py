"""Which client-supplied trace headers are well-formed enough to hand to propagators.

OpenTelemetry's propagators log a warning that quotes each malformed ``tracestate`` or
``baggage`` member, so a client could write text of its choosing into the server's log
on every request. Those headers are checked against the W3C grammars first; one that does
not parse is dropped whole (W3C Trace Context allows discarding a malformed tracestate),
and nothing about it is logged.
"""

from __future__ import annotations

import re

__all__ = ["acceptable_baggage", "acceptable_tracestate"]

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
