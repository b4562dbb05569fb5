"""How a found trace is printed: header, Jaeger UI link, and the waterfall in the terminal."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import select
import struct
import subprocess
import termios
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_reqid_logging.lookup import Span, Trace, render_trace
from otel_reqid_logging.lookup._logs import LogLine, find_log_lines
from otel_reqid_logging.lookup._query import Query
from otel_reqid_logging.lookup._render import Terminal, terminal_for
from otel_reqid_logging.lookup._waterfall import LineRow, RequestLogs, SpanRow, layout

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
MS = 1_000_000
# A moment in 2026, so that log lines can carry real times.
EPOCH = 1_780_000_000 * 1_000_000_000
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def span(
    span_id: str, parent: str | None, start_ms: float, end_ms: float, **fields: object
) -> Span:
    values: dict[str, object] = {"name": f"op-{span_id}"}
    values.update(fields)
    return Span(
        trace_id=TRACE,
        span_id=span_id,
        parent_span_id=parent,
        start_ns=EPOCH + round(start_ms * MS),
        end_ns=EPOCH + round(end_ms * MS),
        **values,  # type: ignore[arg-type]
    )


def line(text: str, at_ms: float | None, marker: str = "", number: int = 1) -> LogLine:
    time = None if at_ms is None else (EPOCH + at_ms * MS) / 1e9
    return LogLine(path="app.log", line_number=number, text=text, time=time, marker=marker)


def cells(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


FIVE = Trace(
    TRACE,
    (
        span("a", None, 0, 80, kind="SERVER", attributes={"request.id": "k3v9q2xd"}),
        span("b", "a", 10, 30),
        span("c", "b", 20, 30.5),
        span("d", "a", 30, 80, status="ERROR", status_message="boom"),
        span("e", "missing", 40, 41.5),
    ),
)


def test_rows_in_tree_order_on_one_time_axis() -> None:
    """Children sit under their parent in start order, each with its duration and a bar on
    the trace's time axis (whole cells, then eighths); a span whose parent was never
    exported is a root; an error is marked and its message shown under it."""
    text = render_trace(FIVE, jaeger_ui_url="http://jaeger:16686/", terminal=Terminal(width=60))

    assert text.splitlines() == [
        f"trace {TRACE}  (5 spans)",
        f"Jaeger UI: http://jaeger:16686/trace/{TRACE}",
        "",
        "                         0                          80.00 ms",
        "op-a          80.00 ms   ███████████████████████████████████",
        "│    SERVER  request.id=k3v9q2xd",
        "├─ op-b       20.00 ms       █████████▏",
        "│  └─ op-c    10.50 ms           █████▍",
        "└─ op-d       50.00 ms !              ██████████████████████",
        "        ERROR: boom",
        "op-e           1.50 ms                    █▏",
    ]


def test_output_that_is_not_utf8_draws_with_hashes() -> None:
    """Where the output encoding is not UTF-8, bars are `#` and the tree is ASCII; a name the
    encoding cannot hold is escaped rather than fatal."""
    trace = Trace(TRACE, (*FIVE.spans[:4], span("e", "a", 40, 41.5, name="réserve ✓")))

    text = render_trace(trace, terminal=Terminal(width=60, encoding="ascii"))

    text.encode("ascii")  # nothing the terminal could not print
    assert text.splitlines()[2:] == [
        "                                   0                80.00 ms",
        "op-a                    80.00 ms   #########################",
        "|    SERVER  request.id=k3v9q2xd",
        "|- op-b                 20.00 ms      ######",
        "|  `- op-c              10.50 ms         ####",
        "|- op-d                 50.00 ms !          ################",
        "|       ERROR: boom",
        "`- r\\xe9serve \\u2713     1.50 ms               #",
    ]
    latin = render_trace(trace, terminal=Terminal(width=60, encoding="latin-1"))
    assert "#" in latin
    assert "█" not in latin
    assert "r\xe9serve" in latin  # latin-1 holds it


def test_bars_are_exact_to_an_eighth_of_a_cell() -> None:
    """A span covering k/8 of a cell more than whole cells ends in the matching eighth block."""
    spans = [span("root", None, 0, 80)] + [
        span(f"s{k}", "root", 0, (16 + k / 8) * 1.25) for k in range(8)
    ]
    # 64 cells of bar after an 8-cell label and 15 of duration: 1.25 ms a cell.
    text = render_trace(Trace(TRACE, tuple(spans)), terminal=Terminal(width=8 + 15 + 64))
    bars = [row.rsplit(" ", 1)[-1] for row in text.splitlines()[4:]]
    assert bars == ["████████████████" + end for end in ("", *"▏▎▍▌▋▊▉")]


@pytest.mark.parametrize("width", [40, 60, 200])
def test_every_line_fits_the_width(width: int) -> None:
    """Rows, details, log lines and tracebacks all fit: narrow names are cut with an
    ellipsis, long text wraps under itself; wide, nothing is cut."""
    name = "GET /api/v1/orders/{order_id}/items/{item_id}/reservations"
    trace = Trace(
        TRACE,
        (
            span(
                "a",
                None,
                0,
                1234.56,  # a length as wide as the duration column
                name=name,
                service="shop",
                kind="SERVER",
                attributes={"url.path": "/api/v1/orders/" + "9" * 60, "request.id": "k3v9q2xd"},
            ),
            span("b", "a", 5, 60, name="SELECT 漢字 FROM stock", service="stock"),
            span("c", "b", 6, 7, name="x" * 300, service="stock"),
        ),
    )
    long = "2026-06-01 08:00:00,000 INFO shop [req:k3v9q2xd] " + "word " * 60
    logs = RequestLogs(
        [
            line(long, 1, "shop: " + name + " (a)"),
            LogLine("app.log", 2, "traceback ahead", None, "", ("Traceback " + "y" * 300,)),
        ],
        0,
        1,
    )

    text = render_trace(trace, logs=logs, terminal=Terminal(width=width))

    rows = text.splitlines()[3:]  # from the time axis on: the header lines are not drawn
    assert max(cells(row) for row in rows) <= width
    joined = "".join(row.strip(" │├└─") for row in rows)
    assert "word " * 30 in " ".join(row.strip(" │") for row in rows) or width < 200
    if width == 200:
        assert name in text
        assert "SELECT 漢字 FROM stock" in text
        assert "…" not in "".join(rows[:4])
    else:
        assert "…" in text
    assert "y" * 20 in joined


def test_colour_only_adds_escapes() -> None:
    """With colour the text is the same once its escape codes are taken out; errors are red."""
    plain = render_trace(FIVE, terminal=Terminal(width=70))
    coloured = render_trace(FIVE, terminal=Terminal(width=70, colour=True))

    assert "\x1b[" not in plain
    assert ANSI.sub("", coloured) == plain
    error_row = next(row for row in coloured.splitlines() if "op-d" in row)
    assert "\x1b[1;31m" in error_row


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, io.TextIOWrapper]]:
    """A real pseudo-terminal of 97 columns: its reading end and a text stream on the other."""
    main, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 97, 0, 0))
    stream = io.TextIOWrapper(os.fdopen(secondary, "wb"), encoding="utf-8")
    yield main, stream
    stream.close()
    os.close(main)


def test_terminal_for_a_tty_a_file_and_the_environment(
    pty_pair: tuple[int, io.TextIOWrapper], tmp_path: Path
) -> None:
    """Colour on a terminal only, never with NO_COLOR or TERM=dumb; the width from --width,
    else COLUMNS, else the terminal's own, else 120; the encoding from the stream."""
    _, tty = pty_pair
    with (tmp_path / "out.txt").open("w", encoding="latin-1") as file:
        assert terminal_for(file, {}, None) == Terminal(width=120, encoding="latin-1")
        assert terminal_for(file, {"COLUMNS": "71"}, None).width == 71
        assert terminal_for(file, {"COLUMNS": "wide"}, None).width == 120
    assert terminal_for(tty, {}, None) == Terminal(width=97, encoding="utf-8", colour=True)
    assert terminal_for(tty, {"COLUMNS": "71"}, None).width == 71
    assert terminal_for(tty, {"COLUMNS": "71"}, 44).width == 44
    assert not terminal_for(tty, {"NO_COLOR": "1"}, None).colour
    assert terminal_for(tty, {"NO_COLOR": ""}, None).colour  # set but empty: no-color.org
    assert not terminal_for(tty, {"TERM": "dumb"}, None).colour


def read_until_exit(main: int, process: subprocess.Popen[bytes]) -> bytes:
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the other end closed: the process is gone
                break
            out += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    return out


def write_json_lines(path: Path, *records: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_lines_sit_under_their_span_at_their_time(tmp_path: Path) -> None:
    """Each line goes under the span whose id it carries, among that span's children by
    time; a line with an unknown span id goes under the root, one with no time keeps its
    place after the line before it."""
    trace = Trace(
        TRACE,
        (
            span("aaaaaaaaaaaaaaaa", None, 0, 80, name="GET /checkout", service="shop"),
            span("bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa", 10, 30, name="reserve", service="shop"),
            span("cccccccccccccccc", "aaaaaaaaaaaaaaaa", 40, 70, name="pay", service="shop"),
        ),
    )

    def at(ms: float) -> float:
        return (EPOCH + ms * MS) / 1e9

    log = write_json_lines(
        tmp_path / "app.jsonl",
        {
            "created": at(5),
            "request_id": "k3v9q2xd",
            "span_id": "aaaaaaaaaaaaaaaa",
            "message": "start",
        },
        {
            "created": at(12),
            "request_id": "k3v9q2xd",
            "span_id": "bbbbbbbbbbbbbbbb",
            "message": "in reserve",
        },
        {
            "created": at(35),
            "request_id": "k3v9q2xd",
            "span_id": "aaaaaaaaaaaaaaaa",
            "message": "between",
        },
        {"request_id": "k3v9q2xd", "span_id": "aaaaaaaaaaaaaaaa", "message": "no time"},
        {
            "created": at(50),
            "request_id": "k3v9q2xd",
            "span_id": "dddddddddddddddd",
            "message": "unknown span",
        },
        {
            "created": at(60),
            "request_id": "k3v9q2xd",
            "span_id": "cccccccccccccccc",
            "message": "in pay",
        },
    )
    lines, _ = find_log_lines([log], trace, Query(request_id="k3v9q2xd"))

    rows = layout(trace, lines).rows
    drawn = [
        row.span.name
        if isinstance(row, SpanRow)
        else f"{row.span.name}: {row.line.text.split()[-1]}"
        for row in rows
    ]
    assert drawn == [
        "GET /checkout",
        "GET /checkout: start",
        "reserve",
        "reserve: reserve",
        "GET /checkout: between",
        "GET /checkout: time",
        "pay",
        "pay: pay",
        "GET /checkout: span",  # an unknown span id: under the root, after its children
    ]
    offsets = [row.offset_ns for row in rows if isinstance(row, LineRow)]
    # Times in seconds since the epoch, as floats: exact to well under a microsecond.
    assert offsets[:3] == pytest.approx([5 * MS, 12 * MS, 35 * MS], abs=1000)
    assert offsets[3] is None
    text = render_trace(trace, logs=RequestLogs(lines, 0, 1), terminal=Terminal(width=100))
    printed = text.splitlines()
    # Under the root, whose children follow: the tree's line goes on beside the line.
    assert printed[5].startswith("│    +5.00 ms   ")
    assert printed[5].endswith(" start")
    # Under reserve, a child whose sibling follows: drawn one level further in.
    assert printed[7].startswith("│       +12.00 ms  ")
    assert printed[7].endswith(" in reserve")
    assert "log lines (6 in 1 file, each under the span it was written in)" in text


def test_services_shown_on_each_row_when_there_are_several() -> None:
    """A trace across services names the service on each row; a one-service trace does not."""
    two = Trace(
        TRACE,
        (
            span("a", None, 0, 80, name="GET /checkout", service="shop"),
            span("b", "a", 10, 60, name="POST /pay", service="payment"),
        ),
    )
    one = Trace(TRACE, (span("a", None, 0, 80, name="GET /checkout", service="shop"),))

    rows = render_trace(two, terminal=Terminal(width=80)).splitlines()

    assert rows[0] == f"trace {TRACE}  (2 spans, service payment, shop)"
    assert re.match(r"GET /checkout +shop +80\.00 ms", rows[3])
    assert re.match(r"└─ POST /pay +payment +50\.00 ms", rows[4])
    assert "shop  " not in render_trace(one, terminal=Terminal(width=80)).splitlines()[3]


def test_two_thousand_spans_and_lines() -> None:
    """A 2,000-span trace with a line in each span: one row per span and per line, every row
    within the width, the whole a few hundred kilobytes."""
    spans = [span("root", None, 0, 2000, kind="SERVER", attributes={"request.id": "k3v9q2xd"})]
    spans += [span(f"s{i:04}", "root", i, i + 0.5, name=f"SELECT {i}") for i in range(1999)]
    lines = [line(f"query {i} done", i + 0.4, f"op-s{i:04} (s{i:04})") for i in range(1999)]
    trace = Trace(TRACE, tuple(spans))

    text = render_trace(trace, logs=RequestLogs(lines, 0, 1), terminal=Terminal(width=100))

    rows = text.splitlines()
    assert sum(1 for row in rows if "SELECT " in row) == 1999
    assert sum(1 for row in rows if " done" in row) == 1999
    assert max(cells(row) for row in rows) <= 100
    assert len(text.encode()) < 600_000


def test_parent_cycle_still_shows_every_span_once() -> None:
    """Spans whose parent ids form a loop are printed once each, and printing ends."""
    trace = Trace(TRACE, (span("a", "b", 0, 1.5), span("b", "a", 0.5, 2)))

    rows = render_trace(trace, terminal=Terminal(width=40)).splitlines()[3:]

    assert [row.split("  ")[0] for row in rows] == ["op-a", "└─ op-b"]


def test_control_characters_from_spans_are_escaped() -> None:
    """Span names, attributes and log lines may carry what a client sent; escapes never
    reach the terminal raw."""
    trace = Trace(
        TRACE,
        (span("a", None, 0, 1, name="GET /\x1b[2J", attributes={"url.path": "/x\r\nFAKE"}),),
    )
    logs = RequestLogs([line("hi \x1b]0;owned\x07 \u202e", 0.5)], 0, 1)

    text = render_trace(trace, logs=logs, terminal=Terminal(width=200, colour=True))

    plain = ANSI.sub("", text)
    assert "\x1b" not in plain
    assert "\r" not in text
    assert "\x07" not in text
    assert "\u202e" not in text
    assert "GET /\\x1b[2J" in text
    assert "url.path=/x\\r\\nFAKE" in text
    assert "hi \\x1b]0;owned\\x07 \\u202e" in text


def test_deep_trace_does_not_hit_the_recursion_limit() -> None:
    """A chain of 5000 nested spans renders (the tree walk is not recursive), each row within
    the width and with its name in sight."""
    spans = [span("s0", None, 0, 5000)] + [
        span(f"s{i}", f"s{i - 1}", i, 5000) for i in range(1, 5000)
    ]

    rows = render_trace(Trace(TRACE, tuple(spans)), terminal=Terminal(width=80)).splitlines()

    assert len(rows) == 2 + 1 + 5000
    assert max(cells(row) for row in rows) <= 80
    assert "op-s4999" in rows[-1]


def test_no_link_without_a_jaeger_ui() -> None:
    """Without a Jaeger UI to point at, no "Jaeger UI" line is printed."""
    trace = Trace(TRACE, (span("a", None, 0, 1.5),))

    assert render_trace(trace, terminal=Terminal(width=40)).splitlines() == [
        f"trace {TRACE}  (1 span)",
        "",
        "                   0             1.50 ms",
        "op-a     1.50 ms   █████████████████████",
    ]
