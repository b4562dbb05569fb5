"""Hostile X-Request-ID, traceparent and tracestate headers, sent as raw bytes.

Requests go over a plain socket so that every byte arrives as written: client libraries
refuse control characters and re-encode the rest. One server per test function serves
every Hypothesis example of that test; each example reads the lines logged for it alone.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pytest_aiohttp import AiohttpServer

from otel_reqid_logging import (
    RequestIdAccessLogger,
    RequestIdMiddleware,
    current_request_id,
    current_trace_id,
    request_id_from_span_id,
)
from tests.conftest import LineCollector

log = logging.getLogger("tests.hostile")

# Bytes that aiohttp's HTTP parser (llhttp) refuses inside a header value, answering 400
# before any middleware runs: control characters other than HTAB, and DEL.
# `test_aiohttp_parser_refuses_exactly_these_bytes` pins this set.
REFUSED_BYTES = frozenset([*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F])
# aiohttp's default max_field_size: a longer header value is refused with a 400.
MAX_FIELD_SIZE = 8190
FORGED = b"] ERROR [req:admin]"
ALLOWLIST = re.compile(rb"[A-Za-z0-9._-]{1,64}")

# Pieces hostile values are built from.
PIECES = [
    FORGED,
    b" ",
    b"\t",
    b"[",
    b"]",
    b'"',
    b"'",
    b"=",
    b",",
    b";",
    b":",
    b"%s",
    b"%(request_id)s",
    b"{0}",
    "é".encode(),
    "✓".encode(),
    "\u202e".encode(),  # right-to-left override
    b"\xff",  # not UTF-8 at all
    b"-",
    b".",
    b"_",
]
# Control characters, drawn less often since each makes aiohttp refuse the request. CR
# and LF only appear between other bytes: a CRLF would end the header line and start
# another, which is a different request.
CONTROL_PIECES = [b"\x00", b"\x07", b"\x1b[31m", b"\x7f", b"x\ry", b"x\ny"]
ALLOWED_CHARS = "ABCXYZabcxyz0189._-"
# 7900 bytes stays under aiohttp's limit with every other piece added; 8300 goes over it.
PADDINGS = [0] * 8 + [7900, 8300]

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SENT_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SENT_SPAN_ID = 0x00F067AA0BA902B7

# Each example is one request on loopback (milliseconds); the deadline only catches a hang.
HYPOTHESIS = settings(
    max_examples=300,
    deadline=2000,
    # One server per test function, shared by the examples on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

_markers = itertools.count()


def new_marker() -> bytes:
    """Return a token found nowhere else, so a line containing it can only come from the value."""
    return b"mk%dzq" % next(_markers)


@dataclass(frozen=True)
class Hostile:
    """A header value built from hostile pieces; a marker goes in before ``pieces[at]``."""

    pieces: tuple[bytes, ...]
    at: int = 0
    padding: int = 0

    def build(self, marker: bytes) -> bytes:
        """Return the value with ``marker`` in it, so a log line holding it is caught."""
        before, after = self.pieces[: self.at], self.pieces[self.at :]
        return b"".join((*before, marker, *after)) + b"a" * self.padding


@st.composite
def hostile_values(draw: st.DrawFn) -> Hostile:
    """An allowlisted run of 0 to 70 characters, often followed by hostile pieces.

    About half the values have no hostile piece, so that adoption is exercised too.
    """
    pieces = [draw(st.text(ALLOWED_CHARS, max_size=70)).encode()]
    if draw(st.booleans()):
        pieces += draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=12))
    if draw(st.integers(0, 7)) == 0:
        pieces.insert(draw(st.integers(0, len(pieces))), draw(st.sampled_from(CONTROL_PIECES)))
    at = draw(st.integers(0, len(pieces)))
    return Hostile(tuple(pieces), at, draw(st.sampled_from(PADDINGS)))


def hex_id(length: int) -> st.SearchStrategy[str]:
    """A non-zero id as ``length`` lower-case hex digits."""
    return st.integers(1, 16**length - 1).map(lambda n: format(n, f"0{length}x"))


@dataclass(frozen=True)
class Traceparent:
    """A traceparent value, and the parent it names when it is valid."""

    value: bytes
    trace_id: int
    span_id: int
    valid: bool
    sampled: bool = False


@st.composite
def valid_traceparents(draw: st.DrawFn) -> Traceparent:
    """Version 00 with exactly four fields, or a later version with optional extra fields."""
    version = format(draw(st.integers(0, 0xFE)), "02x")
    trace_id, span_id = draw(hex_id(32)), draw(hex_id(16))
    flags = format(draw(st.integers(0, 0xFF)), "02x")
    value = f"{version}-{trace_id}-{span_id}-{flags}"
    if version != "00" and draw(st.booleans()):
        value += "-" + draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E)))
    sampled = bool(int(flags, 16) & 1)
    return Traceparent(value.encode(), int(trace_id, 16), int(span_id, 16), True, sampled)


@st.composite
def malformed_traceparents(draw: st.DrawFn) -> Traceparent:
    """A traceparent broken in one of the ways W3C Trace Context says to reject."""
    version = draw(st.sampled_from(["00", "01", "cc"]))
    trace_id, span_id = draw(hex_id(32)), draw(hex_id(16))
    flags = draw(st.sampled_from(["00", "01"]))
    junk = draw(st.sampled_from(["X", "G", "[", "]", "=", '"', "é", "] ERROR [req:admin]"]))
    broken_trace = list(trace_id)
    broken_trace[draw(st.integers(0, 31))] = draw(st.sampled_from("ABCDEFGXZ g[]=é"))
    kind = draw(st.integers(0, 9))
    value = [
        f"ff-{trace_id}-{span_id}-{flags}",  # version ff is forbidden
        f"00-{trace_id}-{span_id}-{flags}-{junk}",  # version 00 has no extra fields
        f"{version}-{'0' * 32}-{span_id}-{flags}",  # all-zero trace id
        f"{version}-{trace_id}-{'0' * 16}-{flags}",  # all-zero span id
        f"{version}-{''.join(broken_trace)}-{span_id}-{flags}",  # upper case or non-hex
        f"{version}-{trace_id[:-1]}-{span_id}-{flags}",  # short trace id
        f"{version}-{trace_id}-{span_id}-{flags}{junk}",  # flags run into junk
        f"{junk} {version}-{trace_id}-{span_id}-{flags}",  # junk before the version
        f"{version}_{trace_id}_{span_id}_{flags}",  # wrong separators
        junk,
    ][kind]
    return Traceparent(value.encode(), int(trace_id, 16), int(span_id, 16), valid=False)


@dataclass
class Reply:
    """What came back for one raw request, and what the server logged meanwhile."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
    lines: list[str] = field(default_factory=list)
    records: list[logging.LogRecord] = field(default_factory=list)
    spans: list[ReadableSpan] = field(default_factory=list)

    def json(self) -> dict[str, str | None]:
        result: dict[str, str | None] = json.loads(self.body)
        return result


class RawClient:
    """Sends requests as raw bytes and collects the lines and spans each one produced."""

    def __init__(
        self, server: TestServer, log_lines: LineCollector, exporter: InMemorySpanExporter
    ) -> None:
        self.server = server
        self.log_lines = log_lines
        self.exporter = exporter
        self._paths = itertools.count()

    async def send(self, headers: Sequence[tuple[bytes, bytes]]) -> Reply:
        """Send GET /r/<n> with ``headers`` written verbatim, and read until the server closes."""
        path = b"/r/%d" % next(self._paths)
        first_line, first_span = len(self.log_lines.lines), len(self.exporter.get_finished_spans())
        head = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % path
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        try:
            writer.write(head + b"\r\n")
            # The server closes after the access line is written, so EOF means all is logged.
            raw = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
        head_part, _, body = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head_part.decode("latin-1").split("\r\n")
        reply_headers: CIMultiDict[str] = CIMultiDict()
        for line in header_lines:
            name, _, value = line.partition(":")
            reply_headers.add(name, value.strip())
        return Reply(
            status=int(status_line.split()[1]),
            headers=reply_headers,
            body=body,
            lines=self.log_lines.lines[first_line:],
            records=self.log_lines.records[first_line:],
            spans=list(self.exporter.get_finished_spans()[first_span:]),
        )


async def report_ids(request: web.Request) -> web.Response:
    log.info("handled %s", request.path)
    return web.json_response({"request_id": current_request_id(), "trace_id": current_trace_id()})


async def start_client(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
    *,
    adopt_incoming_id: bool,
) -> RawClient:
    middleware = RequestIdMiddleware(tracer_provider=provider, adopt_incoming_id=adopt_incoming_id)
    app = web.Application(middlewares=[middleware])
    app.router.add_get("/r/{n}", report_ids)
    server = await aiohttp_server(app, access_log_class=RequestIdAccessLogger)
    return RawClient(server, log_lines, exporter)


@pytest.fixture
async def client(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
) -> RawClient:
    """A raw client of a server with the middleware's defaults (incoming ids not adopted)."""
    return await start_client(
        aiohttp_server, provider, exporter, log_lines, adopt_incoming_id=False
    )


@pytest.fixture
async def adopting_client(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
) -> RawClient:
    """A raw client of a server adopting allowlisted incoming X-Request-ID values."""
    return await start_client(aiohttp_server, provider, exporter, log_lines, adopt_incoming_id=True)


def parser_refuses(values: Sequence[bytes]) -> bool:
    """Tell whether aiohttp's parser answers 400 before our code sees the request."""
    return any(len(v) > MAX_FIELD_SIZE or not REFUSED_BYTES.isdisjoint(v) for v in values)


def allowlisted(value: bytes) -> str | None:
    """Return the value as the server reads it when it passes the allowlist, else None."""
    stripped = value.strip(b" \t")  # the parser drops whitespace around a header value
    # At least one letter or digit: "-" alone would read as a line outside any request.
    readable = stripped.strip(b"._-") != b""
    return stripped.decode("ascii") if readable and ALLOWLIST.fullmatch(stripped) else None


def server_span(reply: Reply) -> ReadableSpan:
    (span,) = reply.spans
    assert span.kind is SpanKind.SERVER
    return span


def derived_id(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return request_id_from_span_id(context.span_id)


def check_answered(reply: Reply, sent: Sequence[bytes]) -> bool:
    """Check the status and the refused-request path; tell whether our code handled it."""
    assert reply.status < 500, reply.body
    if parser_refuses(sent):
        assert reply.status == 400
        # Our code never ran: no span, and no line carries ids (the access line included).
        assert reply.spans == []
        assert {vars(r)["request_id"] for r in reply.records} == {"-"}
        assert any(r.name == "aiohttp.access" for r in reply.records)
        event("refused by aiohttp's parser")
        return False
    assert reply.status == 200
    event("handled by the middleware")
    return True


def check_lines(reply: Reply, short_id: str, *, secrets: Sequence[bytes]) -> None:
    """Every line of a handled request carries its id and none of ``secrets``."""
    for line in reply.lines:
        text = line.encode("utf-8", "surrogateescape")
        for secret in secrets:
            assert secret not in text, line
    names = [r.name for r in reply.records]
    assert names.count("aiohttp.access") == 1
    assert names.count("tests.hostile") == 1
    assert all(vars(r)["request_id"] == short_id for r in reply.records), reply.lines


@HYPOTHESIS
@given(values=st.lists(hostile_values(), min_size=1, max_size=3))
@example(values=[Hostile((FORGED,))])
@example(values=[Hostile((b"abc",))])
@example(values=[Hostile((b"ok",)), Hostile((b"other.ok",))])
async def test_incoming_request_id_is_ignored_by_default(
    client: RawClient, values: list[Hostile]
) -> None:
    """By default X-Request-ID, however often sent and whatever it holds, is never the id."""
    marker = new_marker()
    sent = [v.build(marker) for v in values]
    reply = await client.send([(b"X-Request-ID", v) for v in sent])
    if not check_answered(reply, sent):
        return
    short_id = derived_id(server_span(reply))
    assert reply.headers.getall("X-Request-ID") == [short_id]
    assert reply.json()["request_id"] == short_id
    check_lines(reply, short_id, secrets=[marker, FORGED])


@HYPOTHESIS
@given(values=st.lists(hostile_values(), min_size=1, max_size=3))
@example(values=[Hostile(())])
@example(values=[Hostile((b"abc",))])
@example(values=[Hostile((b"  ", b"abc", b"\t"), at=1)])
@example(values=[Hostile((b"a" * 60,))])  # with the marker: over 64 characters
@example(values=[Hostile((FORGED,))])
@example(values=[Hostile(()), Hostile((FORGED,))])
async def test_only_allowlisted_request_ids_are_adopted(
    adopting_client: RawClient, values: list[Hostile]
) -> None:
    """With adoption on, only ``[A-Za-z0-9._-]{1,64}`` is adopted; the rest is never logged."""
    marker = new_marker()
    sent = [v.build(marker) for v in values]
    reply = await adopting_client.send([(b"X-Request-ID", v) for v in sent])
    if not check_answered(reply, sent):
        return
    span = server_span(reply)
    short_id = reply.headers["X-Request-ID"]
    assert reply.json()["request_id"] == short_id
    assert dict(span.attributes or {})["request.id"] == short_id
    acceptable = {a for a in map(allowlisted, sent) if a is not None}
    event("adopted" if short_id in acceptable else "replaced")
    if len(sent) == 1 and acceptable:
        assert {short_id} == acceptable
    elif not acceptable:
        assert short_id == derived_id(span)
    else:  # repeated header: one of the acceptable values, or the derived id
        assert short_id in {*acceptable, derived_id(span)}
    rejected = [] if acceptable else [marker]
    check_lines(reply, short_id, secrets=[*rejected, FORGED])


@HYPOTHESIS
@given(traceparent=st.one_of(valid_traceparents(), malformed_traceparents()))
@example(traceparent=Traceparent(TRACEPARENT, SENT_TRACE_ID, SENT_SPAN_ID, True, True))
@example(traceparent=Traceparent(b"ff" + TRACEPARENT[2:], SENT_TRACE_ID, SENT_SPAN_ID, False))
@example(traceparent=Traceparent(TRACEPARENT + b"-x", SENT_TRACE_ID, SENT_SPAN_ID, valid=False))
@example(
    traceparent=Traceparent(
        b"01" + TRACEPARENT[2:] + b"-x-y", SENT_TRACE_ID, SENT_SPAN_ID, True, True
    )
)
async def test_malformed_traceparent_starts_a_new_trace(
    client: RawClient, traceparent: Traceparent
) -> None:
    """A valid traceparent continues the caller's trace; any malformed one starts a new trace."""
    sent = [traceparent.value]
    reply = await client.send([(b"traceparent", traceparent.value)])
    if not check_answered(reply, sent):
        return
    body = reply.json()
    short_id = reply.headers["X-Request-ID"]
    event("valid traceparent" if traceparent.valid else "malformed traceparent")
    if traceparent.valid:
        assert body["trace_id"] == format(traceparent.trace_id, "032x")
        # The SDK's default sampler follows the caller's sampled flag.
        assert len(reply.spans) == (1 if traceparent.sampled else 0)
        if traceparent.sampled:
            parent = server_span(reply).parent
            assert parent is not None
            assert parent.is_remote
            assert (parent.trace_id, parent.span_id) == (traceparent.trace_id, traceparent.span_id)
    else:
        span = server_span(reply)
        assert span.parent is None
        context = span.get_span_context()
        assert context is not None
        assert context.trace_id != traceparent.trace_id
        assert body["trace_id"] == format(context.trace_id, "032x")
        assert short_id == derived_id(span)
    check_lines(reply, short_id, secrets=[FORGED])


@HYPOTHESIS
@given(values=st.lists(hostile_values(), min_size=1, max_size=2))
@example(values=[Hostile((FORGED,))])
@example(values=[Hostile((b"vendor=",), at=1)])
async def test_tracestate_never_breaks_the_trace_nor_reaches_a_log(
    client: RawClient, values: list[Hostile]
) -> None:
    """Whatever tracestate holds, a valid traceparent is continued and tracestate is not logged."""
    marker = new_marker()
    sent = [v.build(marker) for v in values]
    headers = [(b"traceparent", TRACEPARENT), *((b"tracestate", v) for v in sent)]
    reply = await client.send(headers)
    if not check_answered(reply, sent):
        return
    parent = server_span(reply).parent
    assert parent is not None
    assert (parent.trace_id, parent.span_id) == (SENT_TRACE_ID, SENT_SPAN_ID)
    check_lines(reply, reply.headers["X-Request-ID"], secrets=[marker, FORGED])


# baggage is not an id, but the default global propagator parses it from the same request.
@pytest.mark.parametrize("header", [b"X-Request-ID", b"traceparent", b"tracestate", b"baggage"])
async def test_forged_log_syntax_is_never_logged(adopting_client: RawClient, header: bytes) -> None:
    """A value imitating log syntax, in any trace-related header, appears in no log line.

    The valid traceparent sent first makes the propagator go on to read the rest.
    """
    reply = await adopting_client.send([(b"traceparent", TRACEPARENT), (header, FORGED)])
    assert reply.status == 200
    short_id = reply.headers["X-Request-ID"]
    check_lines(reply, short_id, secrets=[FORGED, b"req:admin"])


async def test_aiohttp_parser_refuses_exactly_these_bytes(client: RawClient) -> None:
    """aiohttp answers 400 to exactly REFUSED_BYTES in a header value; the others reach us."""
    refused = set()
    for byte in range(256):
        reply = await client.send([(b"X-Request-ID", b"a%cb" % byte)])
        assert reply.status in {200, 400}
        if reply.status == 400:
            refused.add(byte)
            assert reply.spans == []
        else:
            assert reply.json()["request_id"] == derived_id(server_span(reply))
    assert refused == REFUSED_BYTES


@pytest.mark.parametrize("host", ["shop:99999", "shop:abc", "shop:-1"])
async def test_unparsable_host_header_is_served_with_ids(
    aiohttp_server: AiohttpServer, provider: TracerProvider, host: str
) -> None:
    """A Host header yarl cannot parse still gets its answer and ids from a recording span."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    app.router.add_get("/", hello)
    server = await aiohttp_server(app)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 200"), head
    assert re.search(r"\r\nX-Request-ID: [0-9a-z]{8}(\r|$)", head), head
