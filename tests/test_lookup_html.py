"""`lookup ID --html PATH`: the waterfall as one self-contained page, opened in a real
headless Chromium: it renders every span and line, asks the network for nothing, is not
blank, and shows hostile text as text."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import threading
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from otel_reqid_logging.lookup import Span, Trace
from otel_reqid_logging.lookup._cli import EXIT_FOUND, EXIT_USAGE, run
from otel_reqid_logging.lookup._html import render_html
from otel_reqid_logging.lookup._logs import LogLine
from otel_reqid_logging.lookup._model import SpanEvent
from otel_reqid_logging.lookup._waterfall import RequestLogs
from tests.test_lookup_file import write_request

# A real Chromium: the page is the same whichever Python wrote it.
pytestmark = pytest.mark.external_tool

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
MS = 1_000_000
EPOCH = 1_780_000_000 * 1_000_000_000
INSTALL = "apt-get install -y chromium"
# How the brief of this test asks Chromium to run: headless, as root, and quiet on the
# network by itself, so that any request seen comes from the page.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE_NAME = '</style><script>alert("name")</script><img src=x onerror=alert(1)>'
HOSTILE_LINE = "GET /?q=<script>document.title='owned'</script> \x1b[31m\u202e"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed when missing and we are root, else the test fails."""
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        environ = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (INSTALL, "apt-get update", INSTALL):
            subprocess.run(
                command.split(), check=False, env=environ, capture_output=True, timeout=1200
            )
            found = shutil.which("chromium")
            if found is not None:
                break
    if found is None:
        pytest.fail(f"the HTML page is tested in Chromium, which is missing: run `{INSTALL}`")
    return found


def browse(chromium: str, tmp_path: Path, page: Path, *flags: str) -> str:
    """Open ``page`` from the file system in a fresh headless Chromium; return its stdout."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    result = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *flags, page.as_uri()],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


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


def marker(item: Span) -> str:
    """How `_logs` names the span a line belongs to."""
    return f"{item.service}: {item.name} ({item.span_id[:8]})"


def sample() -> tuple[Trace, RequestLogs]:
    """Two services, an error with an exception event, hostile names, attributes and lines."""
    checkout = span(
        "a1a1a1a1a1a1a1a1",
        None,
        0,
        64,
        name="GET /checkout",
        service="shop",
        kind="SERVER",
        status="ERROR",
        status_message="payment declined",
        attributes={"request.id": "mp52x51q", "http.route": "/checkout", "tags": ["a", 1]},
    )
    pay = span(
        "b2b2b2b2b2b2b2b2",
        "a1a1a1a1a1a1a1a1",
        12,
        50,
        name="POST /pay",
        service="payment",
        kind="SERVER",
        status="ERROR",
        status_message="card <b>declined</b>",
        attributes={'"><svg onload=alert(2)>': "<iframe src=//evil.example>"},
        events=(
            SpanEvent(
                "exception",
                EPOCH + 49 * MS,
                {"exception.type": "CardDeclined", "exception.message": "<i>no</i>"},
            ),
        ),
    )
    hostile = span(
        "c3c3c3c3c3c3c3c3", "b2b2b2b2b2b2b2b2", 14, 30, name=HOSTILE_NAME, service="payment"
    )
    render = span(
        "d4d4d4d4d4d4d4d4", "a1a1a1a1a1a1a1a1", 53, 63, name="render page", service="shop"
    )
    trace = Trace(TRACE, (checkout, pay, hostile, render))
    lines = [
        LogLine("shop.log", 1, "checkout started", (EPOCH + 1 * MS) / 1e9, marker(checkout)),
        LogLine("pay.log", 2, HOSTILE_LINE, (EPOCH + 20 * MS) / 1e9, marker(hostile)),
        LogLine(
            "pay.log",
            3,
            "card declined",
            (EPOCH + 49 * MS) / 1e9,
            marker(pay),
            ("Traceback (most recent call last):", "CardDeclined: <no>"),
        ),
        LogLine("shop.log", 7, "payment failed", (EPOCH + 52 * MS) / 1e9, marker(checkout)),
    ]
    return trace, RequestLogs(lines, 0, 2)


class Elements(HTMLParser):
    """Counts elements by tag and by class, and collects the text, of a page or a DOM dump."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.classes: Counter[str] = Counter()
        self.attributes: list[tuple[str, str | None]] = []
        self.texts: list[str] = []
        self.open_details = 0
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attributes += attrs
        for name, value in attrs:
            if name == "class" and value:
                self.classes.update(f"{tag}.{cls}" for cls in value.split())
        if tag == "details" and any(name == "open" for name, _ in attrs):
            self.open_details += 1

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)


def test_page_is_self_contained_and_escapes_everything() -> None:
    """No script, no external reference; one style sheet, allowed by its hash in a policy
    that forbids everything else; client text only ever as text."""
    trace, logs = sample()

    page = render_html(trace, jaeger_ui_url="http://localhost:16686", logs=logs)

    parsed = Elements(page)
    assert parsed.tags["script"] == 0
    assert parsed.tags["img"] == parsed.tags["svg"] == parsed.tags["iframe"] == 0
    assert parsed.tags["style"] == 1
    assert not [name for name, _ in parsed.attributes if name.startswith("on")]
    links = [v for k, v in parsed.attributes if k in ("href", "src") and v]
    assert links == [f"http://localhost:16686/trace/{TRACE}"]  # a link to follow, not a load
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert (
        policy.group(1)
        .replace("&#x27;", "'")
        .startswith(f"default-src 'none'; style-src 'sha256-{digest}';")
    )
    assert HOSTILE_NAME in parsed.text
    assert "GET /?q=<script>document.title='owned'</script> \\x1b[31m\\u202e" in parsed.text
    assert "card <b>declined</b>" in parsed.text
    assert "\x1b" not in page


def test_chromium_renders_every_span_line_attribute_and_event(
    chromium: str, tmp_path: Path
) -> None:
    """After loading, the DOM holds one row per span and per line, each span's status,
    attributes and events, and no element a hostile text tried to make; the first error
    is open."""
    trace, logs = sample()
    page = tmp_path / "trace.html"
    page.write_text(render_html(trace, logs=logs), encoding="utf-8")

    dom = Elements(browse(chromium, tmp_path, page, "--dump-dom"))

    assert dom.classes["summary.row"] == 4
    assert dom.classes["div.log"] == 4
    assert dom.tags["script"] == dom.tags["img"] == dom.tags["svg"] == dom.tags["iframe"] == 0
    assert dom.open_details == 1
    text = dom.text
    for expected in (
        "GET /checkout",
        "POST /pay",
        HOSTILE_NAME,
        "render page",
        "checkout started",
        "CardDeclined: <no>",
        "ERROR: card <b>declined</b>",
        '"><svg onload=alert(2)>',
        "<iframe src=//evil.example>",
        "exception.message",
        "<i>no</i>",
        '["a", 1]',
        "+49.00 ms",
    ):
        assert expected in text, expected
    assert "document.title='owned'" in text


# Chromium calls its own services whatever the flags (its clock check, its updater, its
# sign-in), on every start, before and apart from any page: these hosts are the browser's.
# Anything else a page could ask for (a font on fonts.googleapis.com included) is counted.
BROWSER_OWN = re.compile(
    r"^(?:CONNECT |[A-Z]+ https?://)(?:[a-z0-9-]+\.)*(?:google\.com|update\.googleapis\.com)[:/]"
)


class Recorder(http.server.BaseHTTPRequestHandler):
    """A loopback proxy that answers nothing and notes every request sent through it."""

    seen: list[str]

    def _note(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        self.send_error(404)

    # http.server calls do_<METHOD>: the names are its own.
    do_GET = do_POST = do_HEAD = do_CONNECT = do_OPTIONS = _note  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    """Every request Chromium makes, to any host, goes here and is written down."""
    seen: list[str] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_page_asks_the_network_for_nothing(
    chromium: str, tmp_path: Path, proxy: tuple[str, list[str]]
) -> None:
    """Opened with every request routed through a recording proxy, the page makes none.

    Two controls show the recorder would see one: a page loading an image and a style
    sheet from elsewhere is seen; the same loads put into our page are blocked by its
    Content-Security-Policy and never leave the browser.
    """
    url, seen = proxy
    route = [f"--proxy-server={url}", "--proxy-bypass-list=<-loopback>", "--dump-dom"]
    trace, logs = sample()
    ours = render_html(trace, jaeger_ui_url="http://localhost:16686", logs=logs)
    loads = (
        '<img src="http://images.example/pixel.png">'
        '<link rel="stylesheet" href="http://fonts.example/font.css">'
    )
    control = tmp_path / "control.html"
    control.write_text(f"<!doctype html><html><body>{loads}</body></html>")
    injected = tmp_path / "injected.html"
    injected.write_text(ours.replace("</main>", loads + "</main>"))
    page = tmp_path / "trace.html"
    page.write_text(ours)

    browse(chromium, tmp_path, control, *route)
    assert any("images.example" in hit for hit in seen), seen
    assert any("fonts.example" in hit for hit in seen), seen
    seen.clear()
    browse(chromium, tmp_path, injected, *route)
    browse(chromium, tmp_path, page, *route)
    from_pages = [hit for hit in seen if not BROWSER_OWN.search(hit)]
    assert from_pages == [], "\n".join(hit[:120] for hit in from_pages)


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Decode an 8-bit RGB or RGBA PNG (what Chromium writes) with zlib alone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0)
    assert colour in (2, 6)
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    pixels: list[tuple[int, int, int]] = []
    previous = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                near = min(
                    (abs(guess - left), 0, left),
                    (abs(guess - up), 1, up),
                    (abs(guess - corner), 2, corner),
                )
                line[i] = (line[i] + near[2]) & 0xFF
        pixels += [tuple(line[i : i + 3]) for i in range(0, stride, channels)]  # type: ignore[misc]
        previous = line
    return width, height, pixels


def test_screenshot_shows_the_waterfall(chromium: str, tmp_path: Path) -> None:
    """The page as a picture is not blank: text, the error bars in red and a service's bars
    in its colour cover real areas of it."""
    trace, logs = sample()
    page = tmp_path / "trace.html"
    page.write_text(render_html(trace, jaeger_ui_url="http://localhost:16686", logs=logs))
    picture = tmp_path / "trace.png"

    browse(chromium, tmp_path, page, f"--screenshot={picture}", "--window-size=1280,900")

    width, height, pixels = png_pixels(picture.read_bytes())
    assert (width, height) == (1280, 900)
    background, _ = Counter(pixels).most_common(1)[0]
    drawn = sum(1 for pixel in pixels if pixel != background)
    red = sum(1 for r, g, b in pixels if r > 180 and g < 80 and b < 80)
    # Services' colours: shop and payment, from the page's palette.
    purple = sum(
        1 for r, g, b in pixels if abs(r - 0x94) < 12 and abs(g - 0x67) < 12 and abs(b - 0xBD) < 12
    )
    blue = sum(
        1 for r, g, b in pixels if abs(r - 0x1F) < 12 and abs(g - 0x77) < 12 and abs(b - 0xB4) < 12
    )
    assert drawn > 0.03 * width * height
    assert red > 2000  # two error bars, about 600 and 350 pixels long, 10 high
    assert blue > 1000
    assert purple > 500


def test_two_thousand_spans(chromium: str, tmp_path: Path) -> None:
    """A 2,000-span trace with a line in each span: a page of a few megabytes at most,
    and Chromium renders every row."""
    root = span("r" * 16, None, 0, 2000, name="GET /report", service="shop", kind="SERVER")
    spans = [root] + [
        span(f"{i:016x}", "r" * 16, i, i + 0.5, name=f"SELECT {i}", service="shop")
        for i in range(1999)
    ]
    lines = [
        LogLine(
            "app.log", i, f"query {i} done", (EPOCH + (i + 0.4) * MS) / 1e9, marker(spans[i + 1])
        )
        for i in range(1999)
    ]
    page = tmp_path / "big.html"
    page.write_text(render_html(Trace(TRACE, tuple(spans)), logs=RequestLogs(lines, 0, 1)))

    dom = Elements(browse(chromium, tmp_path, page, "--dump-dom"))

    assert page.stat().st_size < 4_000_000
    assert dom.classes["summary.row"] == 2000
    assert dom.classes["div.log"] == 1999
    assert "query 1998 done" in dom.text


def test_the_command_writes_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`lookup ID --html PATH` prints the waterfall and writes the page; a path in a
    directory that does not exist is refused before the lookup runs."""
    spans = tmp_path / "spans.jsonl"
    trace_id = write_request(spans, "k3v9q2xd")
    page = tmp_path / "trace.html"

    assert run(["--file", str(spans), "k3v9q2xd", "--html", str(page)]) == EXIT_FOUND

    out = capsys.readouterr().out
    assert "└─ load user  " in out
    assert out.endswith(f"\nHTML page: {page}\n")
    written = Elements(page.read_text(encoding="utf-8"))
    assert written.classes["summary.row"] == 2
    assert trace_id in written.text
    assert "cache miss" in written.text
    missing = tmp_path / "nowhere" / "trace.html"
    assert run(["--file", str(spans), "k3v9q2xd", "--html", str(missing)]) == EXIT_USAGE
    assert "--html: cannot write a file at" in capsys.readouterr().err
    assert not missing.parent.exists()


class DevTools:
    """One page of a headless Chromium, driven over its DevTools protocol (a WebSocket)."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse[bool]) -> None:
        self.socket = socket
        self.next_id = 0

    async def call(self, method: str, **params: object) -> dict[str, Any]:
        self.next_id += 1
        await self.socket.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.socket.receive_json(timeout=60)
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    async def wait_for(self, event: str) -> None:
        while (await self.socket.receive_json(timeout=60)).get("method") != event:
            pass

    async def value(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) in the middle of the element."""
        box = await self.value(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.call(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )


@contextlib.asynccontextmanager
async def devtools(chromium: str, tmp_path: Path, page: Path) -> AsyncIterator[DevTools]:
    # A plain process, not asyncio's, whose pipe transport would be closed after the test's
    # event loop on Python 3.10 (a warning, an error here); Popen itself does not block.
    process = subprocess.Popen(  # noqa: ASYNC220
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'devtools-profile'}",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        address = None
        while address is None:
            line = await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), 60)
            assert line, "Chromium ended before it listened for DevTools"
            found = re.search(r"DevTools listening on ws://([^/]+)/", line)
            address = found.group(1) if found else None
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{address}/json/list") as response:
                targets = await response.json()
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with session.ws_connect(url, max_msg_size=0) as socket:
                tools = DevTools(socket)
                await tools.call("Page.enable")
                await tools.call("Page.navigate", url=page.as_uri())
                await tools.wait_for("Page.loadEventFired")
                yield tools
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()


async def test_a_click_on_a_row_shows_the_span(chromium: str, tmp_path: Path) -> None:
    """In the browser, a span's details are hidden until its row is clicked (a real mouse
    click); then its status, attributes and events show; a second click hides them."""
    trace, logs = sample()
    page = tmp_path / "trace.html"
    page.write_text(render_html(trace, logs=logs), encoding="utf-8")
    pay = "#span-b2b2b2b2b2b2b2b2"
    visible = f"document.querySelector('{pay} .info').checkVisibility()"
    # Where the row after it sits: pushed down while the details show.
    below = "document.querySelector('#span-c3c3c3c3c3c3c3c3 > summary').getBoundingClientRect().y"

    async with devtools(chromium, tmp_path, page) as tools:
        # The first error (the root) is open on arrival; the second is not.
        assert await tools.value("document.querySelector('details').open") is True
        hidden = await tools.value(visible)
        before = await tools.value(below)
        await tools.click(f"{pay} > summary")
        shown = await tools.value(visible)
        opened = await tools.value(below)
        text = await tools.value(f"document.querySelector('{pay} .info').innerText")
        await tools.click(f"{pay} > summary")
        hidden_again = await tools.value(visible)
        closed = await tools.value(below)

    assert (hidden, shown, hidden_again) == (False, True, False)
    assert opened > before + 100
    assert closed == before
    assert "ERROR: card <b>declined</b>" in text
    assert "exception.message\t<i>no</i>" in text
