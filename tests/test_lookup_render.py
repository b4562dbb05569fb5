"""How a found trace is printed: header, Jaeger UI link, and the span tree."""

from __future__ import annotations

from otel_reqid_logging.lookup import Span, Trace, render_trace

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def span(span_id: str, parent: str | None, start: int, **fields: object) -> Span:
    values: dict[str, object] = {"name": f"op-{span_id}", "end_ns": start + 1_500_000}
    values.update(fields)
    return Span(
        trace_id=TRACE,
        span_id=span_id,
        parent_span_id=parent,
        start_ns=start,
        **values,  # type: ignore[arg-type]
    )


def test_tree_follows_parents_in_start_order() -> None:
    """Children sit under their parent in start order; a span whose parent was never
    exported is shown as a root rather than dropped."""
    trace = Trace(
        TRACE,
        (
            span("a", None, 0, kind="SERVER", attributes={"request.id": "k3v9q2xd"}),
            span("b", "a", 10),
            span("c", "b", 20),
            span("d", "a", 30, status="ERROR", status_message="boom"),
            span("e", "missing", 40),
        ),
    )

    text = render_trace(trace, jaeger_ui_url="http://jaeger:16686/")

    assert text.splitlines() == [
        f"trace {TRACE}  (5 spans)",
        f"Jaeger UI: http://jaeger:16686/trace/{TRACE}",
        "",
        "op-a  1.50 ms  UNSET  SERVER  request.id=k3v9q2xd",
        "├─ op-b  1.50 ms  UNSET",
        "│  └─ op-c  1.50 ms  UNSET",
        "└─ op-d  1.50 ms  ERROR: boom",
        "op-e  1.50 ms  UNSET",
    ]


def test_parent_cycle_still_shows_every_span_once() -> None:
    """Spans whose parent ids form a loop are printed once each, and printing ends."""
    trace = Trace(TRACE, (span("a", "b", 0), span("b", "a", 10)))

    lines = render_trace(trace).splitlines()[2:]

    assert lines == ["op-a  1.50 ms  UNSET", "└─ op-b  1.50 ms  UNSET"]


def test_control_characters_from_spans_are_escaped() -> None:
    """Span names and attributes may carry what a client sent; escapes never reach the
    terminal raw."""
    trace = Trace(
        TRACE,
        (span("a", None, 0, name="GET /\x1b[2J", attributes={"url.path": "/x\r\nFAKE"}),),
    )

    text = render_trace(trace)

    assert "\x1b" not in text
    assert "\r" not in text
    assert "GET /\\x1b[2J" in text
    assert "url.path=/x\\r\\nFAKE" in text


def test_deep_trace_does_not_hit_the_recursion_limit() -> None:
    """A chain of 5000 nested spans renders (the tree walk is not recursive)."""
    spans = [span("s0", None, 0)] + [span(f"s{i}", f"s{i - 1}", i) for i in range(1, 5000)]

    lines = render_trace(Trace(TRACE, tuple(spans))).splitlines()

    assert len(lines) == 2 + 5000


def test_no_link_without_a_jaeger_ui() -> None:
    """Without a Jaeger UI to point at, no "Jaeger UI" line is printed."""
    trace = Trace(TRACE, (span("a", None, 0),))

    assert render_trace(trace).splitlines() == [
        f"trace {TRACE}  (1 span)",
        "",
        "op-a  1.50 ms  UNSET",
    ]
