"""Thousands of mixed concurrent requests: every line keeps its own request's ids.

One real server (the SDK with an in-memory exporter, RequestIdAccessLogger, the record
factory) takes fast, slow, failing, streaming, WebSocket and client-cancelled requests
at once. Each request carries a token chosen by the client in its path, which joins the
log lines and spans the server made to the ids the client was given.
"""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, TCPConnector, WSMsgType, web
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pytest_aiohttp import AiohttpServer

from otel_reqid_logging import (
    REQUEST_ID_KEY,
    RequestIdAccessLogger,
    RequestIdMiddleware,
    current_request_id,
    current_trace_id,
)
from tests.conftest import LineCollector

log = logging.getLogger("tests.load")

REQUESTS = 3000
CONCURRENCY = 200
# Out of every ten requests: four fast, two slow, and one of each other kind.
MIX = ("fast", "fast", "fast", "fast", "slow", "slow", "fail", "stream", "ws", "cancel")
PREPARED_IN_HANDLER = {"stream", "ws"}
# A hang guard, not a speed test: the run takes a few seconds on a laptop.
RUN_TIMEOUT_S = 120.0
STEP_TIMEOUT_S = 30.0
TOKEN = re.compile(r"\b((?:fast|slow|fail|stream|ws|cancel)-\d{5})\b")


@dataclass
class Probes:
    """What the server saw of each request besides its log lines."""

    started: defaultdict[str, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    finished: defaultdict[str, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    leaks: list[str] = field(default_factory=list)
    # token -> (current_request_id() when the response was prepared, the request's id)
    prepared: dict[str, tuple[str | None, str]] = field(default_factory=dict)


def token_of(request: web.BaseRequest) -> str:
    return request.path.rsplit("/", 1)[-1]


def make_app(probes: Probes, provider: TracerProvider) -> web.Application:
    """The server under load: a probe outside RequestIdMiddleware, and one route per kind."""

    @web.middleware
    async def outer_probe(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # Outside our middleware no request id may be visible, before or after it ran.
        token = token_of(request)
        if current_request_id() is not None:
            probes.leaks.append(f"{token}: before")
        try:
            return await handler(request)
        finally:
            if current_request_id() is not None or current_trace_id() is not None:
                probes.leaks.append(f"{token}: after")
            probes.finished[token].set()

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        probes.prepared[token_of(request)] = (current_request_id(), request[REQUEST_ID_KEY])

    async def ids_response(token: str) -> web.Response:
        return web.json_response(
            {"request_id": current_request_id(), "trace_id": current_trace_id()}
        )

    async def fast(request: web.Request) -> web.Response:
        token = token_of(request)
        log.info("fast %s", token)
        return await ids_response(token)

    async def slow(request: web.Request) -> web.Response:
        token = token_of(request)
        log.info("slow start %s", token)
        await asyncio.sleep(int(token[-2:]) / 2000)  # 0 to 50 ms, spread over the tokens

        async def child() -> None:
            await asyncio.sleep(0)
            log.info("slow child %s", token)

        await asyncio.create_task(child())
        log.info("slow end %s", token)
        return await ids_response(token)

    async def fail(request: web.Request) -> web.Response:
        token = token_of(request)
        log.info("fail %s", token)
        raise RuntimeError(f"boom {token}")

    async def stream(request: web.Request) -> web.StreamResponse:
        token = token_of(request)
        response = web.StreamResponse()
        await response.prepare(request)
        for n in range(3):
            log.info("stream chunk %d %s", n, token)
            await response.write(f"{current_request_id()} {current_trace_id()}\n".encode())
            await asyncio.sleep(0.002)
        await response.write_eof()
        return response

    async def socket(request: web.Request) -> web.WebSocketResponse:
        token = token_of(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(f"{current_request_id()} {current_trace_id()}")
        async for message in ws:
            log.info("ws got %s %s", message.data, token)
            await ws.send_str(f"{message.data} {current_request_id()}")
        return ws

    async def cancel(request: web.Request) -> web.Response:
        token = token_of(request)
        log.info("cancel start %s", token)
        probes.started[token].set()
        try:
            await asyncio.sleep(STEP_TIMEOUT_S)
        except asyncio.CancelledError:
            log.info("cancel cancelled %s", token)
            raise
        return web.Response(text="the client should have gone")

    middleware = RequestIdMiddleware(tracer_provider=provider)
    app = web.Application(middlewares=[outer_probe, middleware])
    app.on_response_prepare.append(on_prepare)
    # The header on the 500 aiohttp builds for a failed request.
    app.on_response_prepare.append(middleware.on_response_prepare)
    for kind, route in [
        ("fast", fast),
        ("slow", slow),
        ("fail", fail),
        ("stream", stream),
        ("ws", socket),
        ("cancel", cancel),
    ]:
        app.router.add_get(f"/{kind}/{{token}}", route)
    return app


@dataclass(frozen=True)
class Seen:
    """The ids a client learned for its request (cancelled ones: from the server's line)."""

    request_id: str
    trace_id: str


class LoadClient:
    """Sends the mix of requests and records the ids each one got."""

    def __init__(self, server: TestServer, probes: Probes, log_lines: LineCollector) -> None:
        self.server = server
        self.probes = probes
        self.log_lines = log_lines
        self.seen: dict[str, Seen] = {}

    async def run(self, session: ClientSession, index: int) -> None:
        kind = MIX[index % len(MIX)]
        token = f"{kind}-{index:05d}"
        path = f"/{kind}/{token}"
        if kind == "ws":
            await self.websocket(session, token, path)
        elif kind == "cancel":
            await self.cancelled(token, path)
        elif kind == "stream":
            async with session.get(self.server.make_url(path)) as response:
                assert response.status == 200
                lines = set((await response.text()).splitlines())
            (line,) = lines
            self.seen[token] = Seen(*line.split())
        else:
            async with session.get(self.server.make_url(path)) as response:
                header = response.headers["X-Request-ID"]
                if kind == "fail":
                    assert response.status == 500
                    await response.read()
                    trace_id = self.server_trace_id(token, header)
                else:
                    assert response.status == 200
                    body: dict[str, str] = await response.json()
                    assert body["request_id"] == header
                    trace_id = body["trace_id"]
            self.seen[token] = Seen(header, trace_id)

    async def websocket(self, session: ClientSession, token: str, path: str) -> None:
        async with session.ws_connect(self.server.make_url(path)) as ws:
            greeting = await ws.receive_str()
            assert isinstance(greeting, str)
            short_id, trace_id = greeting.split()
            for word in ("one", "two"):
                await ws.send_str(word)
                message = await ws.receive()
                assert message.type is WSMsgType.TEXT
                assert message.data == f"{word} {short_id}"
        self.seen[token] = Seen(short_id, trace_id)

    async def cancelled(self, token: str, path: str) -> None:
        """Send a request, and close the connection once the handler is running."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await asyncio.wait_for(self.probes.started[token].wait(), STEP_TIMEOUT_S)
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(self.probes.finished[token].wait(), STEP_TIMEOUT_S)
        assert await reader.read() == b""  # nothing was ever sent back
        (start,) = (r for r in self.log_lines.records if r.getMessage() == f"cancel start {token}")
        self.seen[token] = Seen(vars(start)["request_id"], vars(start)["trace_id"])

    def server_trace_id(self, token: str, short_id: str) -> str:
        """The trace id of a failed request, from its handler's line (the body has none)."""
        (line,) = (r for r in self.log_lines.records if r.getMessage() == f"fail {token}")
        assert vars(line)["request_id"] == short_id
        return str(vars(line)["trace_id"])


async def test_mixed_load_keeps_every_line_with_its_request(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
) -> None:
    """3000 requests, 200 at a time, of six kinds: no id is shared, lost, leaked or mixed up.

    Checked after the run: every log line naming a request has that request's ids (the
    access lines, tracebacks and lines of spawned tasks included); ids are unique; no
    ContextVar is visible outside the middleware; exactly one SERVER span per request;
    no warning, no loop error and no "Error in logging".
    """
    probes = Probes()
    server = await aiohttp_server(
        make_app(probes, provider), access_log_class=RequestIdAccessLogger
    )
    client = LoadClient(server, probes, log_lines)
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context))
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(session: ClientSession, index: int) -> None:
        async with gate:
            await client.run(session, index)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with ClientSession(connector=TCPConnector(limit=CONCURRENCY)) as session:
            await asyncio.wait_for(
                asyncio.gather(*(one(session, i) for i in range(REQUESTS))), RUN_TIMEOUT_S
            )
    asyncio.get_running_loop().set_exception_handler(None)

    assert caught == []
    assert loop_errors == []
    assert current_request_id() is None
    assert current_trace_id() is None
    assert probes.leaks == []

    # Every request got ids of its own.
    seen = client.seen
    assert len(seen) == REQUESTS
    assert len({s.request_id for s in seen.values()}) == REQUESTS
    assert len({s.trace_id for s in seen.values()}) == REQUESTS

    # Every line naming a request carries that request's ids, and no line is left over.
    access_lines: Counter[str] = Counter()
    error_lines: Counter[str] = Counter()
    token_of_id = {s.request_id: token for token, s in seen.items()}
    for record, line in zip(log_lines.records, log_lines.lines, strict=True):
        assert "Error in logging" not in line
        if record.name == "aiohttp.server":
            # aiohttp's own line for a failed request: no token in it, only the ids.
            assert record.getMessage() == "Error handling request from 127.0.0.1", line
            token = token_of_id[vars(record)["request_id"]]
            assert token.startswith("fail"), line
            error_lines[token] += 1
        else:
            match = TOKEN.search(record.getMessage())
            assert match is not None, line
            token = match.group(1)
        assert vars(record)["request_id"] == seen[token].request_id, line
        assert vars(record)["trace_id"] == seen[token].trace_id, line
        assert f"[req:{seen[token].request_id} trace:{seen[token].trace_id}]" in line
        if record.name == "aiohttp.access":
            access_lines[token] += 1
        elif record.name != "aiohttp.server":
            assert record.levelno < logging.WARNING, line

    completed = {t for t in seen if not t.startswith("cancel")}
    assert set(error_lines) == {t for t in seen if t.startswith("fail")}
    assert set(error_lines.values()) == {1}
    assert set(access_lines) == completed
    assert set(access_lines.values()) == {1}

    # The ContextVars are set while a handler prepares its own response, and already
    # reset when aiohttp prepares the response a handler returned.
    assert set(probes.prepared) == completed
    for token, (during, own) in probes.prepared.items():
        assert during == (own if token.split("-")[0] in PREPARED_IN_HANDLER else None), token

    # Exactly one SERVER span per request, carrying the id the client saw.
    spans_per_token: defaultdict[str, list[Any]] = defaultdict(list)
    for span in exporter.get_finished_spans():
        assert span.kind is SpanKind.SERVER
        spans_per_token[str((span.attributes or {})["http.target"]).rsplit("/", 1)[-1]].append(span)
    assert set(spans_per_token) == set(seen)
    for token, spans in spans_per_token.items():
        (span,) = spans
        attributes = dict(span.attributes or {})
        assert attributes["request.id"] == seen[token].request_id
        context = span.get_span_context()
        assert format(context.trace_id, "032x") == seen[token].trace_id
        if token.startswith("fail"):
            assert span.status.status_code is StatusCode.ERROR
        if token.startswith("cancel"):
            assert attributes["error.type"] == "cancelled"
