"""Print a found trace for a person: its id, a Jaeger UI link where there is one, and the
waterfall: one row per span on a shared time axis, with the request's log lines under the
span each was written in."""

from __future__ import annotations

import codecs
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from ._model import AttributeValue, Span, Trace
from ._waterfall import (
    LineRow,
    RequestLogs,
    SpanRow,
    Waterfall,
    format_duration_ns,
    format_offset_ns,
    layout,
)

__all__ = ["KEY_ATTRIBUTES", "Terminal", "jaeger_link", "render_trace", "terminal_for"]

KEY_ATTRIBUTES = (
    "request.id",
    "http.request.method",
    "http.route",
    "url.path",
    "http.response.status_code",
    "error.type",
    "exception.type",
    # The older HTTP semantic conventions, still written by many instrumentations.
    "http.method",
    "http.target",
    "http.status_code",
)
_VALUE_LIMIT = 80
#: The width when the output is no terminal (a pipe, a file) and COLUMNS is not set.
DEFAULT_WIDTH = 120
_MIN_WIDTH = 40
_DURATION = 10  # "9999.99 ms"
_SERVICE_LIMIT = 20
_LABEL_LIMIT = 60
_MIN_BAR = 8
# Left-aligned eighths of a cell: one eighth to seven eighths; a whole cell is "█".
_EIGHTHS = " ▏▎▍▌▋▊▉"
_ASCII_TREE = str.maketrans("├└─│", "|`-|")
# Text of these characters takes one cell each: Latin, Greek and Cyrillic letters without
# combining marks, the tree's box drawing and the bars' block elements.
_NARROW = re.compile(r"[\u0000-\u02ff\u0370-\u0482\u048a-\u052f\u2500-\u259f…]*\Z")

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"
_BOLD_RED = "\x1b[1;31m"
# Bars of each service take one of these, in the order of the sorted service names.
_SERVICE_COLOURS = ("\x1b[36m", "\x1b[34m", "\x1b[35m", "\x1b[32m", "\x1b[33m")


@dataclass(frozen=True)
class Terminal:
    """Where the text goes: its width in cells, its encoding, whether it takes colour."""

    width: int = DEFAULT_WIDTH
    encoding: str = "utf-8"
    colour: bool = False

    @property
    def unicode(self) -> bool:
        """Block and box-drawing characters only where the output is UTF-8."""
        try:
            return codecs.lookup(self.encoding).name.startswith("utf-")
        except LookupError:
            return False


def terminal_for(stream: TextIO, environ: Mapping[str, str], width: int | None) -> Terminal:
    """How to draw for ``stream``: ``width`` if given, else COLUMNS, else the terminal's.

    Colour only on a terminal, never with NO_COLOR set (https://no-color.org) or TERM=dumb.
    """
    tty = _isatty(stream)
    if width is None:
        width = _columns(environ.get("COLUMNS", ""))
    if width is None and tty:
        try:
            width = os.get_terminal_size(stream.fileno()).columns or None
        except (OSError, ValueError):
            width = None
    colour = tty and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"
    return Terminal(
        width=max(width or DEFAULT_WIDTH, _MIN_WIDTH),
        encoding=getattr(stream, "encoding", None) or "utf-8",
        colour=colour,
    )


def jaeger_link(ui_url: str, trace_id: str) -> str:
    """Where the Jaeger UI shows this trace."""
    return f"{ui_url.rstrip('/')}/trace/{trace_id}"


def render_trace(
    trace: Trace,
    *,
    jaeger_ui_url: str | None = None,
    logs: RequestLogs | None = None,
    terminal: Terminal | None = None,
) -> str:
    """The text block for one trace, ending in a newline.

    The "Jaeger UI" link is printed only with ``jaeger_ui_url``: a trace found in the
    span file or in Phoenix need not be in any Jaeger. With ``logs``, each line is drawn
    under the span it was written in, at its time from the trace's start.
    """
    terminal = terminal or Terminal()
    waterfall = layout(trace, logs.lines if logs is not None else ())
    services = waterfall.services
    count = len(trace.spans)
    header = f"trace {trace.trace_id}  ({count} span{'s' * (count != 1)}"
    if services:
        header += ", service " + ", ".join(_clean(s) for s in services)
    lines = [header + ")"]
    if jaeger_ui_url is not None:
        lines.append(f"Jaeger UI: {jaeger_link(jaeger_ui_url, trace.trace_id)}")
    if logs is not None:
        files = f"{logs.files} file{'s' * (logs.files != 1)}"
        if logs.lines:
            lines.append(
                f"log lines ({len(logs.lines)} in {files}, each under the span it was written in)"
            )
        else:
            lines.append(f"no log lines of this request in {files}")
    lines.append("")
    lines += _Drawing(waterfall, terminal).lines()
    if logs is not None and logs.left_out:
        lines.append(
            f"... and {logs.left_out} more matching line(s), not shown (limit {len(logs.lines)})"
        )
    text = "\n".join(lines) + "\n"
    if not terminal.unicode:
        # Whatever the encoding cannot hold (a span name in Cyrillic) is escaped, not fatal.
        text = text.encode(terminal.encoding, "backslashreplace").decode(terminal.encoding)
    return text


class _Drawing:
    """The waterfall's rows as lines of at most ``terminal.width`` cells."""

    def __init__(self, waterfall: Waterfall, terminal: Terminal) -> None:
        self.waterfall = waterfall
        self.terminal = terminal
        self.unicode = terminal.unicode
        self.width = terminal.width
        services = waterfall.services
        self.colours = {
            service: _SERVICE_COLOURS[i % len(_SERVICE_COLOURS)]
            for i, service in enumerate(services)
        }
        # The service column only when there is more than one to tell apart.
        self.service_width = (
            min(max(_cells(self._text(s)) for s in services), _SERVICE_LIMIT, self.width // 6)
            if len(services) > 1
            else 0
        )
        fixed = 2 + (self.service_width + 2 if self.service_width else 0) + _DURATION + 3
        natural = max(
            (_cells(self._text(row.span.name)) + len(row.branch) for row in self._span_rows()),
            default=4,
        )
        label = min(natural, _LABEL_LIMIT)
        bar = self.width - fixed - label
        least_bar = max(_MIN_BAR, self.width // 4)
        if bar < least_bar:
            label = max(self.width - fixed - least_bar, 8)
            bar = max(self.width - fixed - label, 1)
        self.label_width = label
        self.bar_width = bar
        self.bar_start = label + fixed

    def _span_rows(self) -> list[SpanRow]:
        return [row for row in self.waterfall.rows if isinstance(row, SpanRow)]

    def lines(self) -> list[str]:
        out = [self._axis()]
        for row in self.waterfall.rows:
            if isinstance(row, SpanRow):
                out.append(self._span_row(row))
                out += self._details(row)
            else:
                out += self._line_row(row)
        return out

    def _axis(self) -> str:
        """The time axis above the bars: 0 at the left, the trace's length at the right."""
        total = format_duration_ns(self.waterfall.end_ns - self.waterfall.start_ns)
        left = "0"
        room = self.bar_width - len(total)
        scale = (left + " " * (room - len(left)) + total) if room > len(left) else total
        axis = " " * self.bar_start + scale
        # A bar narrower than the length's text: the text ends at the right edge.
        return self._paint(axis if len(axis) <= self.width else total.rjust(self.width), _DIM)

    def _span_row(self, row: SpanRow) -> str:
        span = row.span
        error = span.status == "ERROR"
        label = self._fit(self._label(row), self.label_width)
        parts = [self._paint(label, _BOLD_RED if error else "")]
        if self.service_width:
            parts.append(self._fit(self._text(span.service or ""), self.service_width))
        parts.append(format_duration_ns(span.end_ns - span.start_ns).rjust(_DURATION))
        mark = self._paint("!", _BOLD_RED) if error else " "
        bar = self._bar(span)
        colour = _RED if error else self.colours.get(span.service or "", _SERVICE_COLOURS[0])
        return "  ".join(parts) + " " + mark + " " + self._paint(bar, colour).rstrip()

    def _label(self, row: SpanRow) -> str:
        branch = row.branch if self.unicode else row.branch.translate(_ASCII_TREE)
        # A deep tree keeps the end of its drawing, so that the name stays in sight.
        name = self._text(row.span.name)
        room = max(self.label_width - 8, self.label_width // 2)
        if len(branch) > room and len(branch) + _cells(name) > self.label_width:
            branch = self._ellipsis() + branch[len(branch) - room + len(self._ellipsis()) :]
        return branch + name

    def _bar(self, span: Span) -> str:
        start, end = self.waterfall.start_ns, self.waterfall.end_ns
        scale = self.bar_width / max(end - start, 1)
        first = min(int((span.start_ns - start) * scale), self.bar_width - 1)
        length = max(span.end_ns - span.start_ns, 0) * scale + (
            (span.start_ns - start) * scale - first
        )
        room = self.bar_width - first
        if not self.unicode:
            return " " * first + "#" * min(max(round(length), 1), room)
        eighths = min(max(round(length * 8), 1), room * 8)
        whole, part = divmod(eighths, 8)
        return " " * first + "█" * whole + (_EIGHTHS[part] if part else "")

    def _details(self, row: SpanRow) -> list[str]:
        """Status, kind and the attributes worth showing, below the span's row."""
        span = row.span
        parts = []
        if span.status != "UNSET":
            parts.append(span.status)
            if span.status == "ERROR" and span.status_message:
                parts[-1] += ": " + span.status_message
        if span.kind:
            parts.append(span.kind)
        attributes = " ".join(
            f"{key}={_value(span.attributes[key])}"
            for key in KEY_ATTRIBUTES
            if key in span.attributes
        )
        if attributes:
            parts.append(attributes)
        if span.status == "UNSET" and not attributes and span.kind in (None, "INTERNAL"):
            return []
        gutter = self._tree(row.indent + ("│  " if row.more else "   "))
        return self._wrapped(gutter, "  ".join(parts), "  ", _DIM)

    def _line_row(self, row: LineRow) -> list[str]:
        gutter = self._tree(row.indent + ("│  " if row.more else "   "))
        offset = format_offset_ns(row.offset_ns).ljust(_DURATION)
        text = row.line.text.replace("\t", "    ")
        hang = " " * (_DURATION + 3)
        out = self._wrapped(gutter, text, hang, "", first_prefix=f"  {self._paint(offset, _DIM)} ")
        for extra in row.line.continuation:
            out += self._wrapped(gutter, extra.replace("\t", "    "), hang + "  ", "")
        return out

    def _wrapped(
        self, gutter: str, text: str, hang: str, colour: str, *, first_prefix: str | None = None
    ) -> list[str]:
        """``text`` after ``gutter``, cut into lines that fit, continued under itself."""
        prefix = hang if first_prefix is None else first_prefix
        lead = _cells(gutter) + len(hang)
        room = max(self.width - lead, 10)
        out = []
        for number, piece in enumerate(_chunks(self._text(text), room)):
            body = self._paint(piece, colour)
            out.append(gutter + (prefix if number == 0 else hang) + body)
        return out

    def _text(self, text: str) -> str:
        """Control characters escaped; and what the output encoding cannot hold."""
        text = _clean(text)
        if self.unicode or text.isascii():
            return text
        encoding = self.terminal.encoding
        return text.encode(encoding, "backslashreplace").decode(encoding)

    def _tree(self, drawing: str) -> str:
        return drawing if self.unicode else drawing.translate(_ASCII_TREE)

    def _ellipsis(self) -> str:
        return "…" if self.unicode else "..."

    def _fit(self, text: str, width: int) -> str:
        """``text`` padded or cut to ``width`` cells."""
        cells = _cells(text)
        if cells <= width:
            return text + " " * (width - cells)
        ellipsis = self._ellipsis()
        cut = _take(text, width - len(ellipsis))
        return cut + ellipsis + " " * (width - _cells(cut) - len(ellipsis))

    def _paint(self, text: str, colour: str) -> str:
        if not self.terminal.colour or not colour or not text.strip():
            return text
        return colour + text + _RESET


def _columns(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value > 0 else None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _cells(text: str) -> int:
    """How many terminal cells the text takes: East Asian wide characters take two."""
    if text.isascii() or _NARROW.match(text) is not None:
        return len(text)
    return sum(map(_cell, text))


def _cell(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _take(text: str, width: int) -> str:
    """The longest start of ``text`` that fits in ``width`` cells."""
    if text.isascii():
        return text[: max(width, 0)]
    used = 0
    for index, ch in enumerate(text):
        used += _cell(ch)
        if used > width:
            return text[:index]
    return text


def _chunks(text: str, width: int) -> Sequence[str]:
    """Cut ``text`` into pieces of at most ``width`` cells, at a space where one is near."""
    pieces = []
    while _cells(text) > width:
        piece = _take(text, width)
        space = piece.rfind(" ")
        if space > 0:
            piece = piece[: space + 1]
        pieces.append(piece.rstrip(" ") or piece)
        text = text[len(piece) :]
    pieces.append(text)
    return pieces


def _value(value: AttributeValue) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if len(text) > _VALUE_LIMIT:
        text = text[:_VALUE_LIMIT] + "..."
    return _clean(text)


def _clean(text: str) -> str:
    """Escape control characters: span fields may hold what a client sent (a URL path)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
