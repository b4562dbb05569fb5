"""Search windows written the way people say them: `90s`, `15m`, `1h`, `2d`."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_DURATION = re.compile(r"(?P<amount>[1-9][0-9]{0,6})(?P<unit>[smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Parse `<whole number><s|m|h|d|w>`; raise ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError("expected a number and a unit, like 90s, 15m, 1h, 2d or 1w")
    return timedelta(seconds=int(match["amount"]) * _UNIT_SECONDS[match["unit"]])


def format_duration(span: timedelta) -> str:
    """Write `span` in the largest unit that divides it, the inverse of parse_duration."""
    seconds = int(span.total_seconds())
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
