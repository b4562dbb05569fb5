"""The two ways a lookup can fail, each with its own exit code in the CLI."""

from __future__ import annotations

__all__ = ["COMMON_REASONS", "BackendError", "TraceNotFoundError"]

# Why any store may miss a request, whichever store it is.
COMMON_REASONS = (
    "the request was not sampled (its log lines show trace_sampled=False), so no span was exported",
    "its spans are not exported yet: the batch span processor sends them every few seconds",
)


class TraceNotFoundError(Exception):
    """The store answered, but holds no trace for the id; `reasons` say what probably happened."""

    def __init__(self, message: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.reasons = reasons


class BackendError(Exception):
    """The store could not be reached or gave an answer we cannot read (one-line message)."""
