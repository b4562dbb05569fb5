"""The short request id: known answers, and agreement with an independent base32 encoder."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_reqid_logging._ids import (
    ALPHABET,
    DEFAULT_ID_LENGTH,
    MAX_ID_LENGTH,
    MIN_ID_LENGTH,
    is_acceptable_request_id,
    request_id_from_span_id,
)

# Written down once (5 bits per character, highest first), so that a change to either
# code path of the encoder (the default length's or the general one) shows as a changed answer.
KNOWN = {
    0x4BF92F3577B34DA6: "9fwjydbqpd6t",
    0x00F067AA0BA902B7: "03r6fagbn41b",
    0xA3CE929D0E0E4736: "mf79578e1s3k",
    0xFFFFFFFFFFFFFFFF: "zzzzzzzzzzzz",
    0x0000000000000001: "000000000000",
}
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET.encode())


def reference_id(span_id: int, length: int) -> str:
    """The id as RFC 4648 base32 of the span id's 8 bytes, in our alphabet: a second opinion."""
    encoded = base64.b32encode(span_id.to_bytes(8, "big")).translate(_TO_CROCKFORD)
    return encoded.decode()[:length]


@pytest.mark.parametrize("length", range(MIN_ID_LENGTH, MAX_ID_LENGTH + 1))
@pytest.mark.parametrize("span_id", sorted(KNOWN))
def test_known_answers_for_every_length(span_id: int, length: int) -> None:
    """Fixed span ids give fixed ids for every allowed length: each is a prefix of the longest."""
    assert request_id_from_span_id(span_id, length) == KNOWN[span_id][:length]


def test_default_length_is_eight() -> None:
    """Without a length the id has eight characters: the fast path of the default."""
    assert request_id_from_span_id(0x4BF92F3577B34DA6) == "9fwjydbq"
    assert DEFAULT_ID_LENGTH == 8


@given(
    span_id=st.integers(min_value=1, max_value=2**64 - 1),
    length=st.integers(min_value=MIN_ID_LENGTH, max_value=MAX_ID_LENGTH),
)
def test_agrees_with_base32(span_id: int, length: int) -> None:
    """Every span id and length give what the independent base32 encoding gives."""
    assert request_id_from_span_id(span_id, length) == reference_id(span_id, length)


@pytest.mark.parametrize("length", [0, MAX_ID_LENGTH + 1])
def test_lengths_out_of_range_are_refused(length: int) -> None:
    """A length beyond the span id's bits (or none at all) is an error, not a short id."""
    with pytest.raises(ValueError, match="length must be between"):
        request_id_from_span_id(0x4BF92F3577B34DA6, length)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("abc-123_X.y", True),
        ("", False),
        ("has space", False),
        ("[req:forged]", False),
        ("line\nbreak", False),
        ("x" * 65, False),
        ("-", False),  # the marker of lines outside any request
        ("._-", False),
        ("-a", True),
    ],
)
def test_incoming_id_allowlist(value: str, accepted: bool) -> None:
    """Only short ``[A-Za-z0-9._-]`` ids pass; anything that could forge log syntax fails."""
    assert is_acceptable_request_id(value) is accepted
