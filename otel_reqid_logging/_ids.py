"""The short request id: derived from a span id, and checked when it comes from a client.

This module is the only place that defines what a request id looks like. The middleware,
the access logger, the span attribute and the trace lookup all go through it.

The id is the top bits of the server span's 64-bit span id, written in Crockford's base32
alphabet (digits and lowercase letters without ``i``, ``l``, ``o`` and ``u``), so it is
easy to read aloud and to type. Eight characters carry 40 random bits: among ``n``
requests the chance that any two share an id is about ``n**2 / 2**41``, so roughly 1 in
22,000 for 10,000 requests and an even chance at about 1.2 million requests. The trace id
printed beside it settles any collision; ``id_length`` up to 12 (60 bits) makes them rarer.
"""

from __future__ import annotations

import re

__all__ = [
    "ALPHABET",
    "DEFAULT_ID_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_INCOMING_ID_LENGTH",
    "MIN_ID_LENGTH",
    "is_acceptable_request_id",
    "request_id_from_span_id",
]

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
DEFAULT_ID_LENGTH = 8
MIN_ID_LENGTH = 4
# 12 characters use 60 of the span id's 64 bits; a 13th would need bits it does not have.
MAX_ID_LENGTH = 12
MAX_INCOMING_ID_LENGTH = 64

# Every pair of characters, indexed by the 10 bits it encodes: a request id costs one
# table lookup per two characters (base64.b32encode runs a Python loop and is ~4x slower).
_PAIRS = [first + second for first in ALPHABET for second in ALPHABET]
# For each length, the shifts that bring each 10-bit group down, highest first.
_SHIFTS = {n: tuple(range(10 * ((n + 1) // 2) - 10, -1, -10)) for n in range(1, MAX_ID_LENGTH + 1)}
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._-]+")


def request_id_from_span_id(span_id: int, length: int = DEFAULT_ID_LENGTH) -> str:
    """Return the short request id for a span id: its top ``length * 5`` bits in base32."""
    pairs = _PAIRS
    if length == DEFAULT_ID_LENGTH:
        # The default, once per request: four lookups, no loop.
        top = span_id >> 24
        return (
            pairs[top >> 30] + pairs[top >> 20 & 1023] + pairs[top >> 10 & 1023] + pairs[top & 1023]
        )
    shifts = _SHIFTS.get(length)
    if shifts is None:
        raise ValueError(f"length must be between 1 and {MAX_ID_LENGTH}, got {length}")
    # The top bits rounded up to whole pairs; an odd length drops the last character.
    top = span_id >> (64 - 10 * ((length + 1) // 2))
    text = ""
    for shift in shifts:
        text += pairs[top >> shift & 1023]
    return text[:length]


def is_acceptable_request_id(value: str, max_length: int = MAX_INCOMING_ID_LENGTH) -> bool:
    """Tell whether a client-supplied request id may be adopted as it is.

    Only ``[A-Za-z0-9._-]`` is accepted, so an adopted id can never forge log syntax
    (brackets, spaces, quotes, newlines) or carry invisible characters; and at least one
    letter or digit, so that no id reads as the ``-`` of lines outside any request.
    """
    return (
        0 < len(value) <= max_length
        and _ACCEPTABLE.fullmatch(value) is not None
        and value.strip("._-") != ""
    )
