"""The one protocol every trace store implements, and the lookup order built on it."""

from __future__ import annotations

from typing import Protocol

from ._errors import TraceNotFoundError
from ._model import Trace
from ._query import Query

__all__ = ["Backend", "find"]


class Backend(Protocol):
    """A trace store that can fetch a trace by trace id and search spans by request id."""

    async def by_trace_id(self, trace_id: str) -> Trace:
        """Return the whole trace; raise TraceNotFoundError or BackendError."""
        ...

    async def by_request_id(self, request_id: str) -> list[Trace]:
        """Return the traces whose spans carry `request_id`, newest first; never empty."""
        ...


async def find(backend: Backend, query: Query) -> list[Trace]:
    """Look `query` up: by trace id when known (one fetch), else by request id."""
    if query.trace_id is None:
        if query.request_id is None:
            raise ValueError("a query needs a trace id or a request id")
        return await backend.by_request_id(query.request_id)
    try:
        return [await backend.by_trace_id(query.trace_id)]
    except TraceNotFoundError as by_trace:
        if query.request_id is None:
            raise
        # Both ids came from one log line: try the other one before giving up.
        try:
            return await backend.by_request_id(query.request_id)
        except TraceNotFoundError as by_request:
            reasons = dict.fromkeys((*by_trace.reasons, *by_request.reasons))
            raise TraceNotFoundError(
                f"{by_trace.message}, and {by_request.message}", tuple(reasons)
            ) from None
