"""The local span file: OTLP JSON lines as `opentelemetry-exporter-otlp-json-file` writes them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from .._options import DEFAULT_SPANS_FILE, SPANS_FILE_ENV
from ._errors import BackendError, TraceNotFoundError
from ._model import Span, Trace, group_traces, parse_resource_spans

__all__ = ["DEFAULT_SPANS_FILE", "SPANS_FILE_ENV", "FileBackend"]


class FileBackend:
    """Find traces in a file of OTLP JSON lines, one export batch per line."""

    def __init__(self, *, path: str | Path = DEFAULT_SPANS_FILE) -> None:
        self._path = Path(path)

    async def by_trace_id(self, trace_id: str) -> Trace:
        """Collect every span of `trace_id` from the file."""
        spans = await asyncio.to_thread(self._spans_of, {trace_id})
        if not spans:
            raise self._not_found(f"no span of trace {trace_id} in {self._path}")
        return group_traces(spans)[0]

    async def by_request_id(self, request_id: str) -> list[Trace]:
        """Find the traces whose spans carry `request.id`, then read all their spans."""
        return await asyncio.to_thread(self._by_request_id, request_id)

    def _by_request_id(self, request_id: str) -> list[Trace]:
        # Two passes, because children end (and are exported) before the server
        # span that carries the request id; the file is never held in memory whole.
        needle = json.dumps(request_id)
        trace_ids = {
            span.trace_id
            for span in self._scan(lambda line: needle in line)
            if span.request_id == request_id
        }
        if not trace_ids:
            raise self._not_found(f"no span with request id {request_id} in {self._path}")
        return group_traces(self._spans_of(trace_ids))

    def _spans_of(self, trace_ids: set[str]) -> list[Span]:
        # OTLP JSON writes ids as hex, so a line without the id text holds none of its spans.
        return [
            span
            for span in self._scan(lambda line: any(t in line for t in trace_ids))
            if span.trace_id in trace_ids
        ]

    def _scan(self, wanted: Callable[[str], bool]) -> Iterator[Span]:
        """Yield the spans of each readable line that `wanted` lets through."""
        try:
            with self._path.open(encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    if not wanted(line):
                        continue
                    try:
                        batch = json.loads(line)
                        spans = list(parse_resource_spans(batch.get("resourceSpans") or []))
                    except (ValueError, AttributeError):
                        # A line cut short by a crash mid-write, or not ours: skip it.
                        continue
                    yield from spans
        except FileNotFoundError:
            raise BackendError(
                f"no span file at {self._path} (set {SPANS_FILE_ENV} or pass --file)"
            ) from None
        except OSError as error:
            raise BackendError(f"cannot read {self._path}: {error.strerror}") from None

    def _not_found(self, message: str) -> TraceNotFoundError:
        return TraceNotFoundError(
            message,
            (f"the app writes its spans to another file than {self._path} ({SPANS_FILE_ENV})",),
        )
