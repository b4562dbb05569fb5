"""A structlog processor putting the request's ids into every event.

It needs nothing from structlog itself, so importing this module (or the package) never
imports structlog.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from ._record_values import attributes_here

__all__ = ["add_request_ids"]

_KEYS = ("request_id", "trace_id", "span_id")
_KEY_SET = frozenset(_KEYS)


def add_request_ids(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add ``request_id``, ``trace_id`` and ``span_id`` to a structlog event.

    The values are those the log record factory gives a stdlib record made at the same
    point: the running request's ids, and ``"-"`` outside a request. Keys the event
    already has are left as they are. In ``ProcessorFormatter``'s ``foreign_pre_chain``
    the ids come from the stdlib record being formatted when it carries all three, because
    that record may be formatted after its request ended, as aiohttp's access line is.
    """
    record = event_dict.get("_record")
    source: Mapping[str, Any] | None = getattr(record, "__dict__", None)
    if source is None or not _KEY_SET.issubset(source):
        source = attributes_here()
    for key in _KEYS:
        event_dict.setdefault(key, source[key])
    return event_dict
