"""A trace laid out as a waterfall: rows in tree order, each span's log lines under it.

The terminal (`_render`) and the HTML page (`_html`) draw the same layout, so both show
the same rows in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ._logs import LogLine
from ._model import Span, Trace

__all__ = [
    "LineRow",
    "RequestLogs",
    "SpanRow",
    "Waterfall",
    "format_duration_ns",
    "format_offset_ns",
    "layout",
]


@dataclass(frozen=True)
class RequestLogs:
    """The request's log lines found by ``--logs``, how many were left out, in how many files."""

    lines: Sequence[LogLine]
    left_out: int
    files: int


@dataclass(frozen=True)
class SpanRow:
    """One span: ``branch`` is the tree drawing before its name ("│  ├─ ").

    ``indent`` is what stands before the rows that hang under it; ``more`` says whether
    a child span comes after its details (the tree's vertical line goes on).
    """

    span: Span
    depth: int
    branch: str
    indent: str
    more: bool


@dataclass(frozen=True)
class LineRow:
    """A log line under the span it was written in; ``offset_ns`` from the trace's start."""

    line: LogLine
    span: Span
    depth: int
    indent: str
    more: bool
    offset_ns: int | None


@dataclass(frozen=True)
class Waterfall:
    """The rows, and the time axis they share (the spans' earliest start to latest end)."""

    trace: Trace
    rows: tuple[SpanRow | LineRow, ...]
    start_ns: int
    end_ns: int

    @property
    def services(self) -> list[str]:
        """The services of the trace, sorted."""
        return sorted({span.service for span in self.trace.spans if span.service})

    @property
    def span_count(self) -> int:
        return len(self.trace.spans)


def layout(trace: Trace, lines: Sequence[LogLine] = ()) -> Waterfall:
    """Lay the trace out; each line goes under its span, among the span's children by time.

    A line whose span is not in the trace goes under the first span of its service, else
    under the first root.
    """
    start = trace.start_ns
    end = max((max(span.end_ns, span.start_ns) for span in trace.spans), default=start)
    rows = tuple(_rows(trace.spans, _place(trace.spans, lines), start))
    return Waterfall(trace=trace, rows=rows, start_ns=start, end_ns=max(end, start))


def format_duration_ns(nanoseconds: int) -> str:
    """A duration in at most 10 characters: "1.50 ms", up to "9999.99 ms", then seconds."""
    milliseconds = max(nanoseconds, 0) / 1e6
    if milliseconds < 10_000:
        return f"{milliseconds:.2f} ms"
    return f"{milliseconds / 1000:.2f} s"


def format_offset_ns(nanoseconds: int | None) -> str:
    """When a line was written, from the trace's start: "+12.34 ms", "-0.50 ms"."""
    if nanoseconds is None:
        return ""
    sign = "-" if nanoseconds < 0 else "+"
    return sign + format_duration_ns(abs(nanoseconds))


def _marker(span: Span) -> str:
    # How `_logs` names a line's span (`_Request.marker`): "service: name (span id[:8])".
    name = span.name if not span.service else f"{span.service}: {span.name}"
    return _clean(f"{name} ({span.span_id[:8]})")


def _place(spans: Sequence[Span], lines: Sequence[LogLine]) -> dict[str, list[LogLine]]:
    """The lines of each span id, in the order given (time order)."""
    if not spans or not lines:
        return {}
    by_marker = {_marker(span): span for span in spans}
    first_of_service: dict[str, Span] = {}
    for span in spans:
        if span.service:
            first_of_service.setdefault(_clean(span.service), span)
    ids = {span.span_id for span in spans}
    # spans are in start order: the first span whose parent is missing is the first root.
    root = next((span for span in spans if span.parent_span_id not in ids), spans[0])
    placed: dict[str, list[LogLine]] = {}
    for line in lines:
        span = by_marker.get(line.marker) or first_of_service.get(line.marker) or root
        placed.setdefault(span.span_id, []).append(line)
    return placed


# What the row stack holds: a span to draw (branch, indent, depth), or a line of a span.
_Item = tuple[Span, str, str, int, LogLine | None, bool]


def _rows(
    spans: Sequence[Span], placed: dict[str, list[LogLine]], start_ns: int
) -> Iterator[SpanRow | LineRow]:
    """The rows of the span tree; spans whose parent is missing are shown as roots."""
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    visited: set[str] = set()
    # Roots first; then any span a cycle of parent ids kept out of reach.
    for start in [*children.get(None, []), *spans]:
        # An explicit stack, so that a very deep trace cannot exhaust the recursion limit.
        stack: list[_Item] = [(start, "", "", 0, None, False)]
        while stack:
            span, branch, indent, depth, line, more = stack.pop()
            if line is not None:
                offset = None if line.time is None else round(line.time * 1e9) - start_ns
                yield LineRow(line, span, depth, indent, more, offset)
                continue
            if span.span_id in visited:
                continue
            visited.add(span.span_id)
            kids = [kid for kid in children.get(span.span_id, []) if kid.span_id not in visited]
            below = _merge(kids, placed.get(span.span_id, []))
            yield SpanRow(span, depth, branch, indent, bool(kids))
            # Pushed in reverse, so popped in order; `after`: a child comes after this one.
            after = False
            for position in range(len(below) - 1, -1, -1):
                kid, kid_line = below[position]
                last = not after
                if kid is not None:
                    stack.append(
                        (
                            kid,
                            indent + ("└─ " if last else "├─ "),
                            indent + ("   " if last else "│  "),
                            depth + 1,
                            None,
                            False,
                        )
                    )
                    after = True
                else:
                    stack.append((span, "", indent, depth + 1, kid_line, after))


def _merge(kids: list[Span], lines: list[LogLine]) -> list[tuple[Span | None, LogLine | None]]:
    """Children and lines in time order; a line without a time keeps its place after the last."""
    merged: list[tuple[Span | None, LogLine | None]] = []
    k = 0
    last_time = float("-inf")
    for line in lines:
        if line.time is not None:
            last_time = line.time * 1e9
        while k < len(kids) and kids[k].start_ns <= last_time:
            merged.append((kids[k], None))
            k += 1
        merged.append((None, line))
    merged.extend((kid, None) for kid in kids[k:])
    return merged


def _clean(text: str) -> str:
    """Escape control characters, as `_logs` does when it builds a line's marker."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == "\t" else repr(ch)[1:-1] for ch in text)
