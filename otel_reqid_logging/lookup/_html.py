"""The waterfall as one self-contained HTML page (`lookup ID --html PATH`).

The page needs nothing but itself: no script at all, one inline style sheet allowed by its
hash in a Content-Security-Policy that forbids everything else, so it opens from the file
system in any browser and asks the network for nothing. A span's row is the summary of a
``<details>`` element: clicking it shows the span's status, attributes and events. Every
text (span names, attributes, log lines: what clients sent) is escaped.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from html import escape

from ._model import AttributeValue, Span, Trace
from ._render import jaeger_link
from ._waterfall import (
    LineRow,
    RequestLogs,
    SpanRow,
    Waterfall,
    format_duration_ns,
    format_offset_ns,
    layout,
)

__all__ = ["render_html"]

# Deep trees keep their drawing up to here; past it the name would leave the column.
_TREE_LIMIT = 60
_SERVICE_COLOURS = ("#1f77b4", "#9467bd", "#2ca02c", "#e377c2", "#17becf", "#bcbd22", "#8c564b")

_STYLE = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#6e7781;--line:#d8dee4;
--sel:#eef4ff;--err:#cf222e;--cols:minmax(14rem,34%) 6rem 1fr}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#8b949e;
--line:#30363d;--sel:#161f2e;--err:#ff6b6b}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:13px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,sans-serif}
header{padding:14px 18px;border-bottom:1px solid var(--line)}
h1{font-size:16px;margin:0 0 4px;font-weight:600}
.meta{color:var(--muted);margin:0}
.meta a{color:inherit}
code,.tree,.log .txt,.dur,.kv td,.ev{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,
"Liberation Mono",monospace}
main{padding:0 18px 28px}
.row{display:grid;grid-template-columns:var(--cols);align-items:center;min-height:24px;
border-bottom:1px solid var(--line);gap:0 8px}
.services .row{grid-template-columns:minmax(14rem,30%) 8rem 6rem 1fr}
.axis{position:sticky;top:0;background:var(--bg);color:var(--muted);font-size:11px;z-index:1}
summary.row{cursor:pointer;list-style:none}
summary.row::-webkit-details-marker{display:none}
summary.row:hover,details[open]>summary.row{background:var(--sel)}
summary.row:focus-visible{outline:2px solid var(--muted);outline-offset:-2px}
details:target>summary.row{outline:2px solid var(--err);outline-offset:-2px}
.name{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tree{color:var(--muted);white-space:pre}
.svc{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;color:var(--muted)}
.dur{text-align:right;font-size:12px}
.tl{position:relative;height:16px;background:linear-gradient(90deg,var(--line) 1px,
transparent 1px) 0 0/25% 100%}
.bar{position:absolute;top:3px;height:10px;min-width:2px;border-radius:2px;background:#1f77b4}
.err .name{color:var(--err);font-weight:600}
summary.err .bar{background:var(--err)}
.mark{color:var(--err);font-weight:700}
.log{align-items:start;font-size:12px}
.log .txt{grid-column:1/-2;display:flex;padding:2px 0}
.log .off{flex:none;min-width:6.5em;padding-right:.6em}
.msg{min-width:0;white-space:pre-wrap;overflow-wrap:anywhere}
.log .off{color:var(--muted)}
.log .tl{height:auto;align-self:stretch}
.tick{position:absolute;top:0;bottom:0;width:2px;background:var(--muted)}
.cont{display:block;color:var(--muted)}
.info{padding:8px 14px 12px;border-bottom:1px solid var(--line);background:var(--sel)}
.info h2{font-size:13px;margin:4px 0}
.kv{border-collapse:collapse}
.kv td{padding:1px 12px 1px 0;vertical-align:top;white-space:pre-wrap;overflow-wrap:anywhere}
.kv td:first-child{color:var(--muted);white-space:nowrap}
.ev{margin:2px 0}
.axis .tl{background:none}
.axis .t{position:absolute;top:0}
.a1{left:25%}.a2{left:50%}.a3{left:75%}.a4{right:0}
"""


def render_html(
    trace: Trace, *, jaeger_ui_url: str | None = None, logs: RequestLogs | None = None
) -> str:
    """The page for one trace: its waterfall, with the log lines under their spans."""
    waterfall = layout(trace, logs.lines if logs is not None else ())
    services = waterfall.services
    colours = {s: _SERVICE_COLOURS[i % len(_SERVICE_COLOURS)] for i, s in enumerate(services)}
    rows = list(_rows(waterfall, colours))
    # Positions go into the one style sheet: an inline style attribute would need
    # 'unsafe-inline', which would also let an injected style in.
    style = _STYLE + "".join(_position_rules(waterfall)) + _service_rules(colours)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    policy = (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    title = f"trace {trace.trace_id}"
    head = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(policy)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{style}</style>",
        "</head><body>",
        *_header(waterfall, jaeger_ui_url, logs),
        f'<main class="{"services" if len(services) > 1 else ""}">',
        _axis(waterfall, len(services) > 1),
    ]
    tail = ["</main></body></html>", ""]
    return "\n".join([*head, *rows, *tail])


def _header(waterfall: Waterfall, jaeger_ui_url: str | None, logs: RequestLogs | None) -> list[str]:
    trace = waterfall.trace
    count = waterfall.span_count
    facts = [f"{count} span{'s' * (count != 1)}"]
    if waterfall.services:
        facts.append("service " + ", ".join(waterfall.services))
    facts.append(format_duration_ns(waterfall.end_ns - waterfall.start_ns))
    started = datetime.fromtimestamp(waterfall.start_ns / 1e9, tz=timezone.utc)
    facts.append("started " + started.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    errors = sum(span.status == "ERROR" for span in trace.spans)
    if errors:
        facts.append(f"{errors} error{'s' * (errors != 1)}")
    if logs is not None:
        files = f"{logs.files} file{'s' * (logs.files != 1)}"
        facts.append(f"{len(logs.lines)} log line{'s' * (len(logs.lines) != 1)} in {files}")
        if logs.left_out:
            facts.append(f"{logs.left_out} more not shown")
    out = [
        "<header>",
        f"<h1>trace <code>{escape(trace.trace_id)}</code></h1>",
        f'<p class="meta">{escape(" · ".join(facts))}</p>',
    ]
    if jaeger_ui_url is not None:
        link = escape(jaeger_link(jaeger_ui_url, trace.trace_id))
        out.append(f'<p class="meta">Jaeger UI: <a href="{link}" rel="noreferrer">{link}</a></p>')
    out.append('<p class="meta">Click a span to see its status, attributes and events.</p>')
    out.append("</header>")
    return out


def _axis(waterfall: Waterfall, with_services: bool) -> str:
    total = waterfall.end_ns - waterfall.start_ns
    marks = "".join(
        f'<span class="t a{i}">{escape(format_duration_ns(total * i // 4))}</span>'
        for i in range(5)
    )
    service = "<span>service</span>" if with_services else ""
    return (
        f'<div class="row axis"><span>span</span>{service}<span class="dur">duration</span>'
        f'<span class="tl">{marks}</span></div>'
    )


def _rows(waterfall: Waterfall, colours: Mapping[str, str]) -> Iterator[str]:
    with_services = len(colours) > 1
    # The colour class of each service: its place among the sorted services.
    indexes = {service: index for index, service in enumerate(colours)}
    opened = False
    for index, row in enumerate(waterfall.rows):
        if isinstance(row, LineRow):
            yield _line_row(index, row)
            continue
        span = row.span
        error = span.status == "ERROR"
        # The first error is shown open: what a person came to see.
        open_ = error and not opened
        opened = opened or open_
        colour = indexes.get(span.service or "", 0)
        service = (
            f'<span class="svc v{colour}">{_text(span.service or "")}</span>'
            if with_services
            else ""
        )
        mark = '<span class="mark" title="error">! </span>' if error else ""
        yield (
            f'<details id="span-{escape(span.span_id)}"{" open" if open_ else ""}>'
            f'<summary class="row{" err" if error else ""}">'
            f'<span class="name" title="{_text(span.name)}">'
            f'<span class="tree">{_text(_tree(row.branch))}</span>{mark}{_text(span.name)}</span>'
            f"{service}"
            f'<span class="dur">{escape(format_duration_ns(span.end_ns - span.start_ns))}</span>'
            f'<span class="tl"><span class="bar b{index} v{colour}">'
            "</span></span></summary>"
            f"{_info(span, waterfall.start_ns)}</details>"
        )


def _line_row(index: int, row: LineRow) -> str:
    line = row.line
    continuation = "".join(
        f'<span class="cont">{_text(extra)}</span>' for extra in line.continuation
    )
    where = f"{line.path}:{line.line_number}"
    return (
        f'<div class="row log" title="{_text(where)}"><span class="txt">'
        f'<span class="tree">{_text(_tree(row.indent + ("│  " if row.more else "   ")))}</span>'
        f'<span class="off">{escape(format_offset_ns(row.offset_ns) or "?")}</span>'
        f'<span class="msg">{_text(line.text)}{continuation}</span></span>'
        f'<span class="tl"><span class="tick k{index}"></span></span></div>'
    )


def _info(span: Span, start_ns: int) -> str:
    """What a click on the row shows: status, ids, timing, attributes, events."""
    status = span.status + (f": {span.status_message}" if span.status_message else "")
    facts: list[tuple[str, str]] = [
        ("status", status),
        ("kind", span.kind or ""),
        ("service", span.service or ""),
        ("duration", format_duration_ns(span.end_ns - span.start_ns)),
        ("starts at", format_offset_ns(span.start_ns - start_ns)),
        ("span id", span.span_id),
        ("parent span id", span.parent_span_id or "(none: a root)"),
    ]
    out = ['<div class="info">', _table(facts)]
    if span.attributes:
        out.append("<h2>attributes</h2>")
        out.append(_table([(key, _value(span.attributes[key])) for key in sorted(span.attributes)]))
    if span.events:
        out.append(f"<h2>events ({len(span.events)})</h2>")
        for event in span.events:
            when = format_offset_ns(event.time_ns - start_ns)
            out.append(f'<p class="ev">{escape(when)} {_text(event.name)}</p>')
            if event.attributes:
                pairs = [(key, _value(event.attributes[key])) for key in sorted(event.attributes)]
                out.append(_table(pairs))
    out.append("</div>")
    return "".join(out)


def _table(pairs: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><td>{_text(k)}</td><td>{_text(v)}</td></tr>" for k, v in pairs if v)
    return f'<table class="kv">{cells}</table>'


def _position_rules(waterfall: Waterfall) -> Iterator[str]:
    """Where each bar and each line's tick sits, in percent of the time axis."""
    start = waterfall.start_ns
    total = max(waterfall.end_ns - start, 1)
    for index, row in enumerate(waterfall.rows):
        if isinstance(row, SpanRow):
            left = (row.span.start_ns - start) / total * 100
            width = max(row.span.end_ns - row.span.start_ns, 0) / total * 100
            yield f".b{index}{{left:{left:.3f}%;width:{min(width, 100 - left):.3f}%}}"
        elif row.offset_ns is not None:
            # A line written outside the spans' time (clocks differ) sits at the edge.
            left = min(max(row.offset_ns / total * 100, 0.0), 99.5)
            yield f".k{index}{{left:{left:.3f}%}}"


def _service_rules(colours: Mapping[str, str]) -> str:
    return "".join(
        f".bar.v{i}{{background:{colour}}}.svc.v{i}{{color:{colour}}}"
        for i, colour in enumerate(colours.values())
    )


def _tree(drawing: str) -> str:
    if len(drawing) > _TREE_LIMIT:
        return "…" + drawing[-(_TREE_LIMIT - 1) :]
    return drawing


def _value(value: AttributeValue) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return "" if value is None else str(value)


def _text(text: str) -> str:
    """Escaped for HTML; control characters shown as escapes (a NUL would be lost)."""
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() or ch == "\t" else repr(ch)[1:-1] for ch in text)
    return escape(text, quote=True)
