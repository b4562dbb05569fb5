"""A request's own log lines, read from log files beside its trace (`lookup --logs`).

Files are streamed line by line (gzip-compressed ones too), so a big log costs the time
to read it, not its size in memory; only the matching lines are kept, up to a limit.
A line belongs to the request when the ids the line itself carries (its
``[req:k3v9q2xd trace:4bf9...]`` prefix, its ``request_id=...`` fields, or the id fields
of a JSON line; see ``line_ids``) are one of the trace's request ids or its trace id: an
id that appears elsewhere in the line (in a path or a User-Agent a client sent) does not
make it the request's. The traceback lines that follow a matching line with a timestamp
(a logged exception) belong to it.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

from ._model import Span, Trace
from ._query import LineIds, Query, cut_json_ids, first_string, json_ids, line_ids

__all__ = [
    "MAX_LINES",
    "MAX_LINE_BYTES",
    "LogFilesError",
    "LogLine",
    "find_log_lines",
    "log_files",
    "print_log_lines",
    "render_log_lines",
]

#: Matching lines kept; the rest are counted.
MAX_LINES = 2000
#: Longer lines are cut here (the rest of the line is skipped, not kept in memory).
MAX_LINE_BYTES = 256 * 1024
# Lines kept after a matching one as its continuation (a traceback).
_MAX_CONTINUATION = 200

_TEXT_TIME = re.compile(
    rb"^\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)"
)
# aiohttp's and Apache's `%t`: [01/Dec/2026:08:44:29 +0000].
_CLF_TIME = re.compile(rb"\[(\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\]")
# What follows a logged exception's line: a traceback and its chained parts.
_CONTINUATION = re.compile(
    rb"(?:\s|Traceback \(|During handling of|The above exception|[A-Za-z_][\w.]*(?::|$))"
)
_JSON_TIME_KEYS = ("timestamp", "@timestamp", "time", "asctime", "ts", "created")
_JSON_SERVICE_KEYS = ("otelServiceName", "service", "service.name", "service_name")
# structlog writes its message as "event".
_JSON_MESSAGE_KEYS = ("message", "msg", "event")
_JSON_LEVEL_KEYS = ("levelname", "level", "severity")
_JSON_LOGGER_KEYS = ("name", "logger", "logger_name")
_JSON_TRACEBACK_KEYS = ("exc_info", "exception", "stack_info", "exc_text")


class LogFilesError(ValueError):
    """A ``--logs`` argument names no readable file; the message says which."""


@dataclasses.dataclass(frozen=True)
class LogLine:
    """One log line of the request (with its continuation lines), where it was found."""

    path: str
    line_number: int
    text: str
    time: float | None
    marker: str
    continuation: tuple[str, ...] = ()


def log_files(patterns: Sequence[str]) -> list[Path]:
    """Expand ``--logs`` arguments (paths or globs) to files, each once, in argument order."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            raise LogFilesError(f"--logs {pattern!r} matches no file")
        files = [Path(match) for match in matches if Path(match).is_file()]
        if not files:
            raise LogFilesError(
                f"--logs {pattern!r} matches no regular file (only directories, devices or "
                "pipes); name the log files"
            )
        for file in files:
            _open(file).close()  # unreadable: said now, before the lookup runs
            found.setdefault(file, None)
    return list(found)


def print_log_lines(patterns: Sequence[str], query: Query) -> Callable[[Trace | None], None]:
    """Check ``--logs`` now; return what prints the lines once the trace is known.

    With no patterns the returned function does nothing. Given None (no trace found), it
    prints the lines that carry the ids of the query itself, such as those of a request
    that was not sampled.
    """
    paths = log_files(patterns) if patterns else []

    def show(trace: Trace | None) -> None:
        if not paths:
            return
        try:
            lines, left_out = find_log_lines(paths, trace, query)
        except LogFilesError as error:
            print(f"otel-reqid-logging lookup: error: {error}", file=sys.stderr)
            return
        print(render_log_lines(lines, left_out, paths), end="")

    return show


class _Request:
    """What identifies the request's lines, and how to tell their span and service."""

    def __init__(self, trace: Trace | None, query: Query) -> None:
        spans = trace.spans if trace is not None else ()
        self.by_request_id: dict[str, Span] = {
            span.request_id: span for span in spans if span.request_id is not None
        }
        self.by_span_id = {span.span_id: span for span in spans}
        request_ids = set(self.by_request_id)
        if query.request_id is not None:
            request_ids.add(query.request_id)
        trace_ids = (query.trace_id, trace.trace_id if trace is not None else None)
        self.request_ids = request_ids
        self.trace_ids = {tid for tid in trace_ids if tid is not None}
        # Longest first, so that an id that is a prefix of another does not shadow it.
        tokens = sorted(self.request_ids | self.trace_ids, key=len, reverse=True)
        alternatives = b"|".join(re.escape(token.encode()) for token in tokens) or rb"(?!)"
        # A quick first test: a line that does not hold one of the ids anywhere is not read.
        self.search = re.compile(rb"(?<![A-Za-z0-9._-])(" + alternatives + rb")(?![A-Za-z0-9])")

    def owns(self, ids: LineIds) -> bool:
        """Whether the line's own ids are the request's."""
        return ids.request_id in self.request_ids or (
            ids.trace_id is not None and ids.trace_id.lower() in self.trace_ids
        )

    def marker(self, ids: LineIds, fields: Mapping[str, Any] | None) -> str:
        """Name the span (and service) the line belongs to, or its service, or nothing."""
        span = self._span_of(ids.span_id, self.by_span_id) or self._span_of(
            ids.request_id, self.by_request_id
        )
        if span is not None:
            name = span.name if not span.service else f"{span.service}: {span.name}"
            return _clean(f"{name} ({span.span_id[:8]})")
        service = first_string(fields, _JSON_SERVICE_KEYS) if fields is not None else None
        return _clean(service) if service else ""

    @staticmethod
    def _span_of(value: str | None, spans: Mapping[str, Span]) -> Span | None:
        return None if value is None else spans.get(value)


def find_log_lines(
    paths: Iterable[Path], trace: Trace | None, query: Query, *, limit: int = MAX_LINES
) -> tuple[list[LogLine], int]:
    """Return the request's lines from ``paths`` in time order, and how many were left out.

    Lines with no time of their own take the time of the line before them in their file,
    so they keep their place; lines of one moment keep file and line order.
    """
    request = _Request(trace, query)
    ordered: list[tuple[float, int, int, LogLine]] = []
    left_out = 0
    for file_index, path in enumerate(paths):
        # Lines with no time take the time of the line before them in their file.
        last_time = float("-inf")
        for line in _matching_lines(path, request):
            if len(ordered) >= limit:
                left_out += 1
                continue
            if line.time is not None:
                last_time = line.time
            ordered.append((last_time, file_index, line.line_number, line))
    ordered.sort(key=lambda item: item[:3])
    return [item[3] for item in ordered], left_out


def render_log_lines(lines: Sequence[LogLine], left_out: int, paths: Sequence[Path]) -> str:
    """The text block printed after the trace, ending in a newline."""
    files = f"{len(paths)} file{'s' * (len(paths) != 1)}"
    if not lines:
        return f"\nno log lines of this request in {files}\n"
    out = [f"\nlog lines ({len(lines)} in {files}, in time order):"]
    for line in lines:
        where = _clean(f"{line.path}:{line.line_number}")
        marker = f"[{line.marker}] " if line.marker else ""
        out.append(f"{where}  {marker}{line.text}")
        out.extend(f"    {extra}" for extra in line.continuation)
    if left_out:
        out.append(f"... and {left_out} more matching line(s), not shown (limit {len(lines)})")
    return "\n".join(out) + "\n"


def _matching_lines(path: Path, request: _Request) -> Iterator[LogLine]:
    """Yield the file's lines that carry one of the request's ids, with their continuation."""
    with _open(path) as stream:
        pending: LogLine | None = None
        continuation: list[str] = []
        for number, raw in enumerate(_lines(stream, path), start=1):
            if pending is not None:
                if raw and _CONTINUATION.match(raw) is not None:
                    if len(continuation) < _MAX_CONTINUATION:
                        continuation.append(_decode(raw))
                    continue
                yield dataclasses.replace(pending, continuation=tuple(continuation))
                pending = None
            if request.search.search(raw) is None:
                continue
            fields = _json_fields(raw)
            if fields is not None and "resourceSpans" in fields:
                continue  # the span file itself, caught by a wide glob: the trace shows it
            ids = json_ids(fields) if fields is not None else _text_ids(raw)
            if ids is None or not request.owns(ids):
                continue
            line = LogLine(
                path=str(path),
                line_number=number,
                text=_decode(raw),
                time=_json_time(fields) if fields is not None else _text_time(raw),
                marker=request.marker(ids, fields),
            )
            if fields is not None:
                line = _readable(line, fields)
            # Only a line that starts with its time shows where the next entry begins.
            if fields is None and _TEXT_TIME.match(raw) is not None:
                pending, continuation = line, []
            else:
                yield line
        if pending is not None:
            yield dataclasses.replace(pending, continuation=tuple(continuation))


def _readable(line: LogLine, fields: Mapping[str, Any]) -> LogLine:
    """Show a JSON line as time, level, logger and message, its traceback below it.

    A line without a message field is shown as it is.
    """
    message = first_string(fields, _JSON_MESSAGE_KEYS)
    if message is None:
        return line
    words = [first_string(fields, keys) for keys in (_JSON_LEVEL_KEYS, _JSON_LOGGER_KEYS)]
    when = next((fields[key] for key in _JSON_TIME_KEYS if key in fields), None)
    head = [str(when)] if when is not None else []
    text = " ".join([*head, *(word for word in words if word), message])
    traceback = first_string(fields, _JSON_TRACEBACK_KEYS)
    extra = tuple(_clean(part) for part in traceback.splitlines()) if traceback else ()
    return dataclasses.replace(line, text=_clean(text), continuation=extra[:_MAX_CONTINUATION])


def _open(path: Path) -> IO[bytes]:
    try:
        if path.suffix == ".gz":
            return cast(IO[bytes], gzip.open(path, "rb"))
        return path.open("rb")
    except OSError as error:
        raise LogFilesError(f"--logs: cannot read {str(path)!r}: {error.strerror}") from None


def _lines(stream: IO[bytes], path: Path) -> Iterator[bytes]:
    """Yield lines without their end, each at most MAX_LINE_BYTES; the rest is skipped."""
    try:
        while True:
            line = stream.readline(MAX_LINE_BYTES)
            if not line:
                return
            if not line.endswith(b"\n"):
                # Cut: drop the rest of the line without holding it.
                rest = line
                while rest and not rest.endswith(b"\n"):
                    rest = stream.readline(MAX_LINE_BYTES)
            yield line.rstrip(b"\r\n")
    except (OSError, EOFError) as error:
        # A truncated gzip file (one being rotated) ends there; the lines before it count.
        print(
            f"otel-reqid-logging lookup: warning: stopped reading {_clean(str(path))!r}: {error}",
            file=sys.stderr,
        )


def _json_fields(raw: bytes) -> dict[str, Any] | None:
    stripped = raw.strip()
    if not stripped.startswith(b"{"):
        return None
    try:
        fields = json.loads(stripped)
    except ValueError:  # also UnicodeDecodeError
        return None
    return fields if isinstance(fields, dict) else None


def _json_time(fields: Mapping[str, Any]) -> float | None:
    """Seconds since the epoch of a JSON line, from its first time field that parses."""
    for key in _JSON_TIME_KEYS:
        value = fields.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # Epoch seconds, or milliseconds / nanoseconds from some formatters.
            return _epoch_seconds(float(value))
        if isinstance(value, str):
            parsed = _iso_time(value.encode(errors="replace"))
            if parsed is not None:
                return parsed
    return None


def _text_time(raw: bytes) -> float | None:
    """Seconds since the epoch of a text line: its leading time, or an access log's `%t`."""
    found = _TEXT_TIME.match(raw)
    if found is not None:
        return _iso_time(found.group(1))
    clf = _CLF_TIME.search(raw)
    if clf is None:
        return None
    try:
        return datetime.strptime(clf.group(1).decode(), "%d/%b/%Y:%H:%M:%S %z").timestamp()
    except ValueError:
        return None


def _iso_time(text: bytes) -> float | None:
    """Parse `2026-12-01 08:44:29,123` (logging's asctime) and ISO 8601 variants."""
    value = text.decode(errors="replace").strip().replace(",", ".")
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    # Python 3.10's fromisoformat wants the offset as +hh:mm.
    value = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", value)
    # Python 3.10's fromisoformat takes 3 or 6 fraction digits only.
    value = re.sub(r"\.(\d+)", lambda m: "." + (m.group(1) + "000000")[:6], value, count=1)
    try:
        # A time without zone is local time, as logging's asctime writes it.
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _epoch_seconds(value: float) -> float:
    if value > 1e17:
        return value / 1e9
    if value > 1e11:
        return value / 1e3
    return value


def _text_ids(raw: bytes) -> LineIds | None:
    """The ids of a line that is not a whole JSON object: text, or JSON cut short."""
    text = raw.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        return cut_json_ids(text.strip())
    return line_ids(text)


def _decode(raw: bytes) -> str:
    return _clean(raw.decode("utf-8", errors="replace"))


def _clean(text: str) -> str:
    """Escape control characters: a log line may hold what a client sent."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == "\t" else repr(ch)[1:-1] for ch in text)
