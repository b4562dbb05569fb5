"""Print a found trace for a person: its id, a Jaeger UI link where there is one, the span tree."""

from __future__ import annotations

from collections.abc import Iterator

from ._model import AttributeValue, Span, Trace

__all__ = ["KEY_ATTRIBUTES", "jaeger_link", "render_trace"]

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


def jaeger_link(ui_url: str, trace_id: str) -> str:
    """Where the Jaeger UI shows this trace."""
    return f"{ui_url.rstrip('/')}/trace/{trace_id}"


def render_trace(trace: Trace, *, jaeger_ui_url: str | None = None) -> str:
    """The text block for one trace, ending in a newline.

    The "Jaeger UI" link is printed only with ``jaeger_ui_url``: a trace found in the
    span file or in Phoenix need not be in any Jaeger.
    """
    services = sorted({span.service for span in trace.spans if span.service})
    header = f"trace {trace.trace_id}  ({len(trace.spans)} span{'s' * (len(trace.spans) != 1)}"
    if services:
        header += ", service " + ", ".join(_clean(s) for s in services)
    lines = [header + ")"]
    if jaeger_ui_url is not None:
        lines.append(f"Jaeger UI: {jaeger_link(jaeger_ui_url, trace.trace_id)}")
    lines.append("")
    lines += _tree(trace.spans)
    return "\n".join(lines) + "\n"


def _tree(spans: tuple[Span, ...]) -> Iterator[str]:
    """Lines of the span tree; spans whose parent is missing are shown as roots."""
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    visited: set[str] = set()
    # Roots first; then any span a cycle of parent ids kept out of reach.
    for start in [*children.get(None, []), *spans]:
        # An explicit stack, so that a very deep trace cannot exhaust the recursion limit.
        stack = [(start, "", "")]
        while stack:
            span, branch, indent = stack.pop()
            if span.span_id in visited:
                continue
            visited.add(span.span_id)
            yield branch + _describe(span)
            kids = children.get(span.span_id, [])
            for position, kid in reversed(list(enumerate(kids))):
                last = position == len(kids) - 1
                stack.append(
                    (kid, indent + ("└─ " if last else "├─ "), indent + ("   " if last else "│  "))
                )


def _describe(span: Span) -> str:
    parts = [_clean(span.name), f"{span.duration_ms:.2f} ms", span.status]
    if span.status == "ERROR" and span.status_message:
        parts[-1] += ": " + _clean(span.status_message)
    if span.kind:
        parts.append(span.kind)
    attributes = " ".join(
        f"{key}={_value(span.attributes[key])}" for key in KEY_ATTRIBUTES if key in span.attributes
    )
    if attributes:
        parts.append(attributes)
    return "  ".join(parts)


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
