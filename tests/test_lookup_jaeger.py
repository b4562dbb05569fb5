"""The Jaeger store, through the CLI, against a real Jaeger v2 on loopback.

Spans are made by the real SDK and sent to Jaeger's OTLP receiver; the lookup asks its
query service. Stand-ins (tests.jaeger_fake) play only what the real Jaeger cannot be
made to do: an older release's API, a server error, a hang. The proxy in front of the
real Jaeger also records what the lookup asked and counts the bytes of the answers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_reqid_logging._options import SPANS_FILE_ENV
from otel_reqid_logging.lookup._cli import (
    EXIT_BACKEND_ERROR,
    EXIT_FOUND,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    run,
)
from otel_reqid_logging.lookup._http import MAX_BODY_BYTES
from otel_reqid_logging.lookup.jaeger import JaegerBackend
from tests.jaeger_fake import JaegerMode, OlderJaeger, failing_jaeger, hanging_jaeger
from tests.tools import JaegerServer

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
STORE_WAIT_S = 15.0


def unique(prefix: str) -> str:
    """A name no other test in the session's shared Jaeger uses."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def request_trace(
    request_id: str,
    *,
    service: str,
    trace_id: int | None = None,
    children: int = 1,
    padding: int = 0,
) -> list[ReadableSpan]:
    """Spans of one served request, made by the real SDK: a SERVER span and failing children.

    ``padding`` characters of statement text on each child make the answer large.
    """
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
        for number in range(children):
            with tracer.start_as_current_span("SELECT users") as child:
                child.set_attribute("db.query.text", f"-- {number} " + "x" * padding)
                child.set_status(Status(StatusCode.ERROR, "db down"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def trace_hex(spans: Sequence[ReadableSpan]) -> str:
    context = spans[0].context
    assert context is not None
    return f"{context.trace_id:032x}"


async def stored(jaeger: JaegerServer, *traces: Sequence[ReadableSpan]) -> None:
    """Send the traces to Jaeger over OTLP, and wait until its query service has them all."""
    exporter = OTLPSpanExporter(endpoint=f"{jaeger.otlp_http_endpoint}/v1/traces", timeout=30)
    spans = [span for trace in traces for span in trace]
    for start in range(0, len(spans), 500):
        result = await asyncio.to_thread(exporter.export, spans[start : start + 500])
        assert result is SpanExportResult.SUCCESS
    await asyncio.to_thread(exporter.shutdown)
    deadline = time.monotonic() + STORE_WAIT_S
    async with aiohttp.ClientSession() as session:
        for trace in traces:
            url = f"{jaeger.query_url}/api/v3/traces/{trace_hex(trace)}"
            while True:
                async with session.get(url) as answer:
                    body = await answer.read()
                count = body.count(b'"spanId"') if answer.status == 200 else 0
                if count >= len(trace):
                    break
                assert time.monotonic() < deadline, f"Jaeger has {count}/{len(trace)} spans"
                await asyncio.sleep(0.1)


async def lookup(*argv: str) -> int:
    # The CLI runs its own event loop, so it runs in a thread beside the test's loop.
    return await asyncio.to_thread(run, list(argv))


async def older(
    aiohttp_server: ServerFactory, jaeger: JaegerServer, mode: JaegerMode
) -> OlderJaeger:
    """A proxy in front of the real Jaeger that plays `mode`; its ``url`` is set."""
    proxy = OlderJaeger(upstream=jaeger.query_url, mode=mode)
    server = await aiohttp_server(proxy.app())
    proxy.url = str(server.make_url("")).rstrip("/")
    return proxy


async def test_found_through_a_tag_search(
    jaeger_server: JaegerServer,
    aiohttp_server: ServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A request id is found with one tag search of /api/traces that names the service,
    the attribute and a microsecond window; the trace is then fetched whole from api_v3
    by its id, and printed as a tree with a UI link."""
    service, request_id, other = unique("shop-"), unique("r"), unique("o")
    spans = request_trace(request_id, service=service)
    await stored(jaeger_server, spans, request_trace(other, service=service))
    proxy = await older(aiohttp_server, jaeger_server, JaegerMode.CURRENT)

    code = await lookup(
        "--backend", "jaeger", "--jaeger-url", proxy.url, "--service", service, request_id
    )

    out = capsys.readouterr().out
    assert code == EXIT_FOUND, out
    paths = [path for path, _ in proxy.requests]
    assert paths == ["/api/traces", f"/api/v3/traces/{trace_hex(spans)}"]
    params = proxy.requests[0][1]
    assert params["service"] == service
    assert json.loads(params["tags"]) == {"request.id": request_id}
    assert params["limit"] == "20"
    window = int(params["end"]) - int(params["start"])
    assert 24 * 3600 * 1_000_000 <= window <= 25 * 3600 * 1_000_000
    # What is drawn, and how, is the renderer's (tests/test_lookup_render.py); here: that
    # the whole trace of this request, and nothing of the other, reached it.
    assert trace_hex(spans) in out
    assert f"{proxy.url}/trace/{trace_hex(spans)}" in out
    assert service in out
    assert "GET /users/{id}" in out
    assert "SELECT users" in out
    assert request_id in out
    assert other not in out


async def test_found_by_trace_id_from_a_log_line(
    jaeger_server: JaegerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pasted text log line with a trace id is fetched directly, needing no service or
    window, and the link uses --jaeger-ui-url when given."""
    spans = request_trace(unique("r"), service=unique("shop-"))
    await stored(jaeger_server, spans)
    line = f"2026-11-24 03:37:40,123 INFO app [req:k3v9q2xd trace:{trace_hex(spans)}] hello"

    code = await lookup(
        "--backend",
        "jaeger",
        "--jaeger-url",
        jaeger_server.query_url,
        "--jaeger-ui-url",
        "https://ui.example",
        line,
    )

    out = capsys.readouterr().out
    assert code == EXIT_FOUND
    assert "SELECT users" in out
    assert f"https://ui.example/trace/{trace_hex(spans)}" in out


@pytest.mark.parametrize("with_trace_id", [True, False])
async def test_found_from_a_pasted_json_line(
    with_trace_id: bool, jaeger_server: JaegerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JSON log line (python-json-logger's shape) is looked up by its trace_id, or, when
    it has none, by its request_id with --service."""
    service, request_id = unique("shop-"), unique("r")
    spans = request_trace(request_id, service=service)
    await stored(jaeger_server, spans, request_trace(unique("o"), service=service))
    fields = {"asctime": "2026-11-24 03:37:40", "message": "hello", "request_id": request_id}
    if with_trace_id:
        fields |= {"trace_id": trace_hex(spans), "span_id": "00f067aa0ba902b7"}

    code = await lookup(
        "--jaeger-url", jaeger_server.query_url, "--service", service, json.dumps(fields)
    )

    out = capsys.readouterr().out
    assert code == EXIT_FOUND, out
    assert trace_hex(spans) in out
    assert "SELECT users" in out
    assert request_id in out


async def test_jaeger_url_alone_selects_jaeger(
    jaeger_server: JaegerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lookup ID --jaeger-url URL` asks Jaeger, not the local span file (there is none)."""
    spans = request_trace(unique("r"), service=unique("shop-"))
    await stored(jaeger_server, spans)
    monkeypatch.setenv(SPANS_FILE_ENV, "/nonexistent/spans.jsonl")
    monkeypatch.delenv("OTEL_REQID_LOOKUP_BACKEND", raising=False)

    code = await lookup("--jaeger-url", jaeger_server.query_url, trace_hex(spans))

    assert code == EXIT_FOUND


def test_two_stores_named_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--jaeger-url and --phoenix-url together, without --backend, is ambiguous: exit 2."""
    code = run(["--jaeger-url", "http://127.0.0.1:9", "--phoenix-url", "http://127.0.0.1:9", "x1"])

    assert code == EXIT_USAGE
    assert "choose one with --backend" in capsys.readouterr().err


async def test_large_trace_is_read_whole(
    jaeger_server: JaegerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trace of 2,000 spans, an answer of several MB, is read whole: by request id and
    by trace id."""
    service, request_id = unique("big-"), unique("r")
    spans = request_trace(request_id, service=service, children=2000, padding=1500)
    await stored(jaeger_server, spans)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{jaeger_server.query_url}/api/v3/traces/{trace_hex(spans)}") as answer,
    ):
        size = len(await answer.read())
    assert 3_000_000 < size < MAX_BODY_BYTES

    by_request = await lookup(
        "--backend",
        "jaeger",
        "--jaeger-url",
        jaeger_server.query_url,
        "--service",
        service,
        request_id,
    )
    first = capsys.readouterr().out
    by_trace = await lookup("--jaeger-url", jaeger_server.query_url, trace_hex(spans))
    second = capsys.readouterr().out

    assert (by_request, by_trace) == (EXIT_FOUND, EXIT_FOUND)
    for out in (first, second):
        assert trace_hex(spans) in out
        assert out.count("SELECT users") == 2000


@pytest.mark.parametrize("mode", [JaegerMode.V1_ONLY, JaegerMode.V1_ONLY_UI_FALLBACK])
async def test_found_through_v1_fallback(
    mode: JaegerMode,
    jaeger_server: JaegerServer,
    aiohttp_server: ServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Where api_v3 is missing (a router 404 page, or the UI's HTML page), the trace the
    tag search of /api/traces returned is shown, read from the UI model."""
    service, request_id = unique("shop-"), unique("r")
    spans = request_trace(request_id, service=service)
    await stored(jaeger_server, spans, request_trace(unique("o"), service=service))
    proxy = await older(aiohttp_server, jaeger_server, mode)

    code = await lookup(
        "--backend", "jaeger", "--jaeger-url", proxy.url, "--service", service, request_id
    )

    out = capsys.readouterr().out
    assert code == EXIT_FOUND, out
    # The search answer held the trace whole; api_v3 is asked once, in vain.
    paths = [path for path, _ in proxy.requests]
    assert paths == ["/api/traces", f"/api/v3/traces/{trace_hex(spans)}"]
    assert trace_hex(spans) in out
    assert request_id in out
    assert "SELECT users" in out
    # The UI model's tags become the span's fields, as api_v3's OTLP gives them.
    async with aiohttp.ClientSession() as session:
        backend = JaegerBackend(session=session, url=proxy.url, service=service)
        (found,) = await backend.by_request_id(request_id)
    server, child = found.spans
    assert (server.name, server.kind, server.request_id) == (
        "GET /users/{id}",
        "SERVER",
        request_id,
    )
    assert server.attributes["http.route"] == "/users/{id}"
    assert (child.name, child.kind, child.status, child.status_message) == (
        "SELECT users",
        "INTERNAL",
        "ERROR",
        "db down",
    )
    assert child.parent_span_id == server.span_id
    assert {server.service, child.service} == {service}


def large_traces(services: Sequence[str], per_service: int) -> list[list[ReadableSpan]]:
    """Traces of other requests, ~150 kB each in Jaeger's answers, in each service."""
    return [
        request_trace(unique("o"), service=service, children=60, padding=2000)
        for service in services
        for _ in range(per_service)
    ]


async def v3_size(jaeger: JaegerServer, spans: Sequence[ReadableSpan]) -> int:
    """Bytes of the trace's own api_v3 answer, the size of fetching it whole."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{jaeger.query_url}/api/v3/traces/{trace_hex(spans)}") as answer,
    ):
        return len(await answer.read())


@pytest.mark.parametrize("narrowed", [True, False], ids=["service", "every-service"])
async def test_a_busy_store_transfers_only_the_matching_trace(
    narrowed: bool,
    jaeger_server: JaegerServer,
    aiohttp_server: ServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With larger traces of other requests stored after it, in its service and in two
    others, a request-id lookup (with --service, and searching every service) transfers
    less than any one of them: no trace but the matching one crosses the wire. The
    bytes are counted by a proxy in front of the real Jaeger, whose api_v3 ignores
    `query.attributes` (it would have answered with the newest traces, whole)."""
    service, request_id = unique("shop-"), unique("r")
    wanted = request_trace(request_id, service=service, children=5)
    others = large_traces([service, unique("pay-"), unique("mail-")], per_service=3)
    await stored(jaeger_server, wanted)
    await stored(jaeger_server, *others)
    smallest_other = min([await v3_size(jaeger_server, trace) for trace in others])
    wanted_size = await v3_size(jaeger_server, wanted)
    assert smallest_other > 20 * wanted_size
    proxy = await older(aiohttp_server, jaeger_server, JaegerMode.CURRENT)

    narrowing = ["--service", service] if narrowed else []
    code = await lookup("--jaeger-url", proxy.url, *narrowing, request_id)

    out = capsys.readouterr().out
    assert code == EXIT_FOUND, out
    assert f"trace {trace_hex(wanted)}" in out
    assert "also match" not in out
    assert wanted_size <= proxy.transferred < smallest_other
    assert not any(trace_hex(trace) in out for trace in others)
    searched = {query["service"] for path, query in proxy.requests if path == "/api/traces"}
    if narrowed:
        assert searched == {service}
    else:
        assert proxy.requests[0][0] == "/api/services"
        assert {service, *(trace[0].resource.attributes["service.name"] for trace in others)} <= (
            searched
        )


def two_service_trace(
    shop: str, payment: str, shop_request_id: str, payment_request_id: str
) -> list[ReadableSpan]:
    """One trace across two services: shop's SERVER span calls payment's, each with the
    request id its own middleware gave it."""
    exporter = InMemorySpanExporter()
    tracers = []
    for service in (shop, payment):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracers.append((provider, provider.get_tracer("test")))
    (shop_provider, shop_tracer), (payment_provider, payment_tracer) = tracers
    with shop_tracer.start_as_current_span("POST /orders/{id}/pay", kind=SpanKind.SERVER) as s:
        s.set_attribute("request.id", shop_request_id)
        with (
            shop_tracer.start_as_current_span("POST", kind=SpanKind.CLIENT),
            payment_tracer.start_as_current_span("POST /charge", kind=SpanKind.SERVER) as p,
        ):
            p.set_attribute("request.id", payment_request_id)
    shop_provider.shutdown()
    payment_provider.shutdown()
    return list(exporter.get_finished_spans())


async def test_a_line_of_either_service_finds_the_trace(
    jaeger_server: JaegerServer,
    aiohttp_server: ServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --service every service Jaeger lists is searched, so the request id of
    a line from the called service finds the whole trace as well as the caller's does;
    --service naming the other service finds nothing (exit 1, and says why)."""
    shop, payment = unique("shop-"), unique("pay-")
    shop_id, payment_id = unique("r"), unique("r")
    spans = two_service_trace(shop, payment, shop_id, payment_id)
    await stored(jaeger_server, spans)
    proxy = await older(aiohttp_server, jaeger_server, JaegerMode.CURRENT)

    for request_id in (shop_id, payment_id):
        code = await lookup("--jaeger-url", proxy.url, f"[req:{request_id}] charging card")
        out = capsys.readouterr().out
        assert code == EXIT_FOUND, out
        assert trace_hex(spans) in out
        assert shop in out
        assert payment in out
    narrowed = await lookup("--jaeger-url", proxy.url, "--service", shop, payment_id)
    err = capsys.readouterr().err

    assert narrowed == EXIT_NOT_FOUND
    assert (
        f"no trace with request id {payment_id} in Jaeger at {proxy.url} (service '{shop}')" in err
    )
    assert "leave out --service to search every service" in err


async def test_api_v3_alone_is_searched_with_attributes(
    jaeger_server: JaegerServer,
    aiohttp_server: ServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Jaeger serving api_v3 without the UI's /api routes is searched there, with
    `query.attributes`; the traces in its answer that do not carry the id (2.12 ignores
    the attribute) are left out, and its list of services is read from /api/v3/services."""
    service, request_id = unique("shop-"), unique("r")
    wanted = request_trace(request_id, service=service)
    await stored(jaeger_server, wanted, request_trace(unique("o"), service=service))
    proxy = await older(aiohttp_server, jaeger_server, JaegerMode.V3_ONLY)

    narrowed = await lookup("--jaeger-url", proxy.url, "--service", service, request_id)
    narrowed_paths = [path for path, _ in proxy.requests]
    proxy.requests.clear()
    everywhere = await lookup("--jaeger-url", proxy.url, request_id)

    out = capsys.readouterr().out
    assert (narrowed, everywhere) == (EXIT_FOUND, EXIT_FOUND), out
    assert narrowed_paths == ["/api/traces", "/api/v3/traces"]
    assert [path for path, _ in proxy.requests][:2] == ["/api/services", "/api/v3/services"]
    v3_searches = [query for path, query in proxy.requests if path == "/api/v3/traces"]
    assert service in {query["query.service_name"] for query in v3_searches}
    assert all(json.loads(q["query.attributes"]) == {"request.id": request_id} for q in v3_searches)
    assert out.count(trace_hex(wanted)) >= 2
    assert "also match" not in out


async def test_v1_trace_id_without_zero_high_half(
    jaeger_server: JaegerServer,
    aiohttp_server: ServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Jaeger's UI model writes a trace id with a zero high half as 16 hex digits; the
    lookup by the 32-digit id still finds and prints it under the full id."""
    trace_id = 0xABCDEF00 + uuid.uuid4().int % 0xFFFF
    spans = request_trace(unique("r"), service=unique("shop-"), trace_id=trace_id)
    await stored(jaeger_server, spans)
    proxy = await older(aiohttp_server, jaeger_server, JaegerMode.V1_ONLY)

    code = await lookup("--backend", "jaeger", "--jaeger-url", proxy.url, f"{trace_id:032x}")

    assert code == EXIT_FOUND
    assert [path for path, _ in proxy.requests][-1] == f"/api/traces/{trace_id:032x}"
    assert f"trace {trace_id:032x}  (2 spans" in capsys.readouterr().out


async def test_not_found_names_likely_reasons(
    jaeger_server: JaegerServer,
    aiohttp_server: ServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A tag search that finds nothing exits 1 (asking nothing else) and lists why:
    another service, outside the window, unsampled."""
    request_id = unique("r")
    await stored(jaeger_server, request_trace(request_id, service=unique("billing-")))
    proxy = await older(aiohttp_server, jaeger_server, JaegerMode.CURRENT)

    code = await lookup(
        "--backend",
        "jaeger",
        "--jaeger-url",
        proxy.url,
        "--service",
        "shop",
        "--lookback",
        "2h",
        request_id,
    )

    err = capsys.readouterr().err
    assert code == EXIT_NOT_FOUND
    assert [path for path, _ in proxy.requests] == ["/api/traces"]
    assert f"no trace with request id {request_id} in Jaeger" in err
    assert "another service than 'shop'" in err
    assert "the last 2h (widen it with --lookback)" in err
    assert "not sampled" in err


async def test_unknown_trace_id_not_found(
    jaeger_server: JaegerServer,
    aiohttp_server: ServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unknown trace id is a not-found (exit 1), not a failure: through api_v3 and
    through /api/traces/{id}'s 404."""
    proxy = await older(aiohttp_server, jaeger_server, JaegerMode.V1_ONLY)

    v3 = await lookup("--backend", "jaeger", "--jaeger-url", jaeger_server.query_url, "ab" * 16)
    v1 = await lookup("--backend", "jaeger", "--jaeger-url", proxy.url, "ab" * 16)

    assert (v3, v1) == (EXIT_NOT_FOUND, EXIT_NOT_FOUND)
    assert capsys.readouterr().err.count(f"no trace {'ab' * 16} in Jaeger") == 2


async def test_server_error_is_one_line(
    aiohttp_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 500 with Jaeger's error body exits 3 with the server's message on one line.
    (A stand-in: the real Jaeger's memory storage does not fail.)"""
    server = await aiohttp_server(failing_jaeger("storage\x1b[31m down"))

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
    assert err == f"{prefix}{url}/api/traces: connection refused\n"


async def test_slow_server_times_out(
    aiohttp_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that never answers costs at most --timeout, then exit 3.
    (A stand-in: the real Jaeger cannot be made to hang.)"""
    server = await aiohttp_server(hanging_jaeger())
    url = str(server.make_url("")).rstrip("/")

    code = await asyncio.wait_for(
        lookup("--backend", "jaeger", "--jaeger-url", url, "--timeout", "0.3", "ab" * 16), 10
    )

    assert code == EXIT_BACKEND_ERROR
    assert "did not answer in time" in capsys.readouterr().err


async def test_service_and_url_default_from_the_environment(
    jaeger_server: JaegerServer,
    aiohttp_server: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_REQID_LOOKUP_SERVICE narrows the search as --service does, and
    OTEL_REQID_JAEGER_URL is the default for --jaeger-url. OTEL_SERVICE_NAME, the app's
    own setting, narrows nothing: a line from another service still finds its trace."""
    service, request_id = unique("shop-"), unique("r")
    await stored(jaeger_server, request_trace(request_id, service=service))
    proxy = await older(aiohttp_server, jaeger_server, JaegerMode.CURRENT)
    monkeypatch.setenv("OTEL_REQID_JAEGER_URL", proxy.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", unique("billing-"))

    everywhere = await lookup("--backend", "jaeger", request_id)
    searched_everywhere = {q["service"] for path, q in proxy.requests if path == "/api/traces"}
    proxy.requests.clear()
    monkeypatch.setenv("OTEL_REQID_LOOKUP_SERVICE", service)
    narrowed = await lookup("--backend", "jaeger", request_id)

    assert (everywhere, narrowed) == (EXIT_FOUND, EXIT_FOUND)
    assert service in searched_everywhere
    assert [q["service"] for path, q in proxy.requests if path == "/api/traces"] == [service]
