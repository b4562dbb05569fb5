"""The Jaeger store, through the CLI, against a loopback server answering in Jaeger's shapes."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_reqid_logging.lookup._cli import (
    EXIT_BACKEND_ERROR,
    EXIT_FOUND,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    run,
)
from tests.jaeger_fake import JaegerMode, JaegerStore, jaeger_app

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


def request_trace(
    request_id: str, *, service: str = "shop", trace_id: int | None = None
) -> list[ReadableSpan]:
    """Spans of one served request, made by the real SDK: a SERVER span and a failing child."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    if trace_id is not None:
        provider.id_generator.generate_trace_id = lambda: trace_id  # type: ignore[method-assign]
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /users/{id}", kind=SpanKind.SERVER) as server:
        server.set_attribute("request.id", request_id)
        server.set_attribute("http.route", "/users/{id}")
        server.set_attribute("http.response.status_code", 500)
        with tracer.start_as_current_span("SELECT users") as child:
            child.set_status(Status(StatusCode.ERROR, "db down"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def trace_hex(spans: list[ReadableSpan]) -> str:
    context = spans[0].context
    assert context is not None
    return f"{context.trace_id:032x}"


async def serve(aiohttp_server: ServerFactory, store: JaegerStore) -> str:
    server = await aiohttp_server(jaeger_app(store))
    return str(server.make_url("")).rstrip("/")


async def lookup(*argv: str) -> int:
    # The CLI runs its own event loop, so it runs in a thread beside the server's loop.
    return await asyncio.to_thread(run, list(argv))


async def test_found_through_api_v3(
    aiohttp_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A request id is found with one api_v3 search that names the service, the attribute
    and an RFC 3339 window, and the whole trace is printed as a tree with a UI link."""
    spans = request_trace("k3v9q2xd")
    store = JaegerStore(spans=spans + request_trace("other001"))
    url = await serve(aiohttp_server, store)

    code = await lookup("--backend", "jaeger", "--jaeger-url", url, "--service", "shop", "k3v9q2xd")

    out = capsys.readouterr().out
    assert code == EXIT_FOUND
    assert [path for path, _ in store.requests] == ["/api/v3/traces"]
    params = store.requests[0][1]
    assert params["query.service_name"] == "shop"
    assert json.loads(params["query.attributes"]) == {"request.id": "k3v9q2xd"}
    window = datetime.fromisoformat(params["query.start_time_max"]) - datetime.fromisoformat(
        params["query.start_time_min"]
    )
    assert timedelta(hours=24) <= window <= timedelta(hours=25)
    assert f"trace {trace_hex(spans)}  (2 spans, service shop)" in out
    assert f"Jaeger UI: {url}/trace/{trace_hex(spans)}" in out
    assert "GET /users/{id}  " in out
    assert "SERVER  request.id=k3v9q2xd http.route=/users/{id} http.response.status_code=500" in out
    assert "└─ SELECT users  " in out
    assert "ERROR: db down" in out
    assert "other001" not in out


async def test_found_by_trace_id_from_a_log_line(
    aiohttp_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pasted log line with a trace id is fetched directly, needing no service or window,
    and the link uses --jaeger-ui-url when given."""
    spans = request_trace("k3v9q2xd")
    store = JaegerStore(spans=spans)
    url = await serve(aiohttp_server, store)
    line = f"2026-11-24 03:37:40,123 INFO app [req:k3v9q2xd trace:{trace_hex(spans)}] hello"

    code = await lookup(
        "--backend", "jaeger", "--jaeger-url", url, "--jaeger-ui-url", "https://ui.example", line
    )

    assert code == EXIT_FOUND
    assert [path for path, _ in store.requests] == [f"/api/v3/traces/{trace_hex(spans)}"]
    assert f"Jaeger UI: https://ui.example/trace/{trace_hex(spans)}" in capsys.readouterr().out


@pytest.mark.parametrize("mode", [JaegerMode.V1_ONLY, JaegerMode.V1_ONLY_UI_FALLBACK])
async def test_found_through_v1_fallback(
    aiohttp_server: ServerFactory, capsys: pytest.CaptureFixture[str], mode: JaegerMode
) -> None:
    """Where api_v3 is missing (a router 404 page, or the UI's HTML page), the search goes
    to /api/traces with tags and a microsecond window, and reads the UI model."""
    spans = request_trace("k3v9q2xd")
    store = JaegerStore(spans=spans, mode=mode)
    url = await serve(aiohttp_server, store)

    code = await lookup("--backend", "jaeger", "--jaeger-url", url, "--service", "shop", "k3v9q2xd")

    out = capsys.readouterr().out
    assert code == EXIT_FOUND
    assert [path for path, _ in store.requests] == ["/api/v3/traces", "/api/traces"]
    params = store.requests[1][1]
    assert params["service"] == "shop"
    assert json.loads(params["tags"]) == {"request.id": "k3v9q2xd"}
    assert int(params["end"]) - int(params["start"]) >= 24 * 3600 * 1_000_000
    assert f"trace {trace_hex(spans)}  (2 spans, service shop)" in out
    assert "SERVER  request.id=k3v9q2xd" in out
    assert "└─ SELECT users  " in out
    assert "ERROR: db down  INTERNAL" in out


async def test_v3_ignoring_attributes_shows_only_the_matching_trace(
    aiohttp_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Jaeger whose api_v3 ignores `query.attributes` returns other requests' traces too;
    only the trace that carries the request id is shown."""
    wanted = request_trace("k3v9q2xd")
    store = JaegerStore(
        spans=wanted + request_trace("aaaa0001"), mode=JaegerMode.V3_WITHOUT_ATTRIBUTES
    )
    url = await serve(aiohttp_server, store)

    code = await lookup("--backend", "jaeger", "--jaeger-url", url, "--service", "shop", "k3v9q2xd")

    out = capsys.readouterr().out
    assert code == EXIT_FOUND
    assert [path for path, _ in store.requests] == ["/api/v3/traces"]
    assert f"trace {trace_hex(wanted)}" in out
    assert "aaaa0001" not in out
    assert "also match" not in out


async def test_v3_ignoring_attributes_falls_back_to_tags(
    aiohttp_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """When such an api_v3 answers only with newer traces of other requests, the tag
    search of /api/traces finds the right one."""
    wanted = request_trace("k3v9q2xd")
    store = JaegerStore(
        spans=wanted + request_trace("aaaa0001"),
        mode=JaegerMode.V3_WITHOUT_ATTRIBUTES,
        search_limit=1,
    )
    url = await serve(aiohttp_server, store)

    code = await lookup("--backend", "jaeger", "--jaeger-url", url, "--service", "shop", "k3v9q2xd")

    out = capsys.readouterr().out
    assert code == EXIT_FOUND
    assert [path for path, _ in store.requests] == ["/api/v3/traces", "/api/traces"]
    assert f"trace {trace_hex(wanted)}" in out
    assert "aaaa0001" not in out


async def test_v1_trace_id_without_zero_high_half(
    aiohttp_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Jaeger's UI model writes a trace id with a zero high half as 16 hex digits; the
    lookup by the 32-digit id still finds and prints it under the full id."""
    spans = request_trace("k3v9q2xd", trace_id=0xABCDEF)
    store = JaegerStore(spans=spans, mode=JaegerMode.V1_ONLY)
    url = await serve(aiohttp_server, store)

    code = await lookup("--backend", "jaeger", "--jaeger-url", url, f"{0xABCDEF:032x}")

    assert code == EXIT_FOUND
    assert f"trace {0xABCDEF:032x}  (2 spans" in capsys.readouterr().out


async def test_not_found_names_likely_reasons(
    aiohttp_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """api_v3's 404 "No traces found" exits 1 (without a v1 retry) and lists why: another
    service, outside the window, unsampled."""
    store = JaegerStore(spans=request_trace("k3v9q2xd", service="billing"))
    url = await serve(aiohttp_server, store)

    code = await lookup(
        "--backend",
        "jaeger",
        "--jaeger-url",
        url,
        "--service",
        "shop",
        "--lookback",
        "2h",
        "k3v9q2xd",
    )

    err = capsys.readouterr().err
    assert code == EXIT_NOT_FOUND
    assert [path for path, _ in store.requests] == ["/api/v3/traces"]
    assert "no trace with request id k3v9q2xd in Jaeger" in err
    assert "another service than 'shop'" in err
    assert "the last 2h (widen it with --lookback)" in err
    assert "not sampled" in err


async def test_unknown_trace_id_not_found_through_v1(
    aiohttp_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """/api/traces/{id}'s 404 `trace not found` is a not-found (exit 1), not a failure."""
    store = JaegerStore(mode=JaegerMode.V1_ONLY)
    url = await serve(aiohttp_server, store)

    code = await lookup("--backend", "jaeger", "--jaeger-url", url, "ab" * 16)

    assert code == EXIT_NOT_FOUND
    assert f"no trace {'ab' * 16} in Jaeger" in capsys.readouterr().err


async def test_server_error_is_one_line(
    aiohttp_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 500 with Jaeger's error body exits 3 with the server's message on one line."""
    app = web.Application()
    body = json.dumps({"error": {"httpCode": 500, "message": "storage\x1b[31m down"}})

    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=500, text=body)

    app.router.add_get("/api/v3/traces", fail)
    server = await aiohttp_server(app)

    code = await lookup(
        "--backend", "jaeger", "--jaeger-url", str(server.make_url("")), "--service", "s", "id1"
    )

    err = capsys.readouterr().err
    assert code == EXIT_BACKEND_ERROR
    assert err.count("\n") == 1
    assert "HTTP 500" in err
    assert "\x1b" not in err
    assert "Traceback" not in err


async def test_unreachable_is_a_clean_message(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening on the port: exit 3, one line naming the address, no traceback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    code = await lookup("--backend", "jaeger", "--jaeger-url", url, "--service", "s", "k3v9q2xd")

    err = capsys.readouterr().err
    assert code == EXIT_BACKEND_ERROR
    prefix = "otel-reqid-logging lookup: cannot reach Jaeger at "
    assert err == f"{prefix}{url}/api/v3/traces: connection refused\n"


async def test_slow_server_times_out(
    aiohttp_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that never answers costs at most --timeout, then exit 3."""

    async def stall(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    app = web.Application()
    app.router.add_get("/api/v3/traces/{trace_id}", stall)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")

    code = await asyncio.wait_for(
        lookup("--backend", "jaeger", "--jaeger-url", url, "--timeout", "0.3", "ab" * 16), 10
    )

    assert code == EXIT_BACKEND_ERROR
    assert "did not answer in time" in capsys.readouterr().err


def test_request_id_search_needs_a_service(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Jaeger searches need a service: without --service or OTEL_SERVICE_NAME it is a
    usage error (exit 2) before any request is made."""
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)

    code = run(["--backend", "jaeger", "--jaeger-url", "http://127.0.0.1:9", "k3v9q2xd"])

    assert code == EXIT_USAGE
    assert "needs --service" in capsys.readouterr().err


async def test_service_defaults_to_otel_service_name(
    aiohttp_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_SERVICE_NAME, the app's own setting, is the default for --service."""
    store = JaegerStore(spans=request_trace("k3v9q2xd", service="shop"))
    url = await serve(aiohttp_server, store)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop")
    monkeypatch.setenv("OTEL_REQID_JAEGER_URL", url)

    code = await lookup("--backend", "jaeger", "k3v9q2xd")

    assert code == EXIT_FOUND
    assert store.requests[0][1]["query.service_name"] == "shop"
