"""Sentry events of a request carry its ids: the real sentry_sdk, a capturing transport."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

import pytest
import sentry_sdk
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.aiohttp import AioHttpIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.transport import Transport

from otel_reqid_logging import RequestIdAccessLogger, RequestIdMiddleware, current_request_id
from tests.conftest import LineCollector
from tests.subprocess_app import ROOT, run_app_process
from tests.test_middleware import ID_RE
from tests.wheels import CONSTRAINTS, make_venv, run, uv

log = logging.getLogger("tests.sentry_app")
CONCURRENT_REQUESTS = 50
# A DSN is what makes the client active; the capturing transport means nothing is sent.
DSN = "http://public@127.0.0.1:9/1"
EXAMPLES = ROOT / "examples"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class CapturingTransport(Transport):
    """A Sentry transport that keeps every envelope instead of sending it."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        """Return the error and message events captured so far, oldest first."""
        events = (envelope.get_event() for envelope in self.envelopes)
        return [cast("dict[str, Any]", event) for event in events if event is not None]

    def event_with_message(self, message: str) -> dict[str, Any]:
        """Return the one event whose message (or log entry) is ``message``."""
        (event,) = [event for event in self.events() if message_of(event) == message]
        return event


def message_of(event: dict[str, Any]) -> str | None:
    """Return what an event says: its message, or the message of its log entry."""
    logentry = event.get("logentry") or {}
    return event.get("message") or logentry.get("formatted") or logentry.get("message")


def id_tags(event: dict[str, Any]) -> dict[str, str]:
    """Return the tags this library sets, as the event carries them."""
    tags = event.get("tags") or {}
    return {key: tags[key] for key in ("request_id", "trace_id") if key in tags}


@pytest.fixture(params=[True, False], ids=["with-AioHttpIntegration", "without-AioHttpIntegration"])
def sentry_transport(request: pytest.FixtureRequest) -> Iterator[CapturingTransport]:
    """Initialize the real sentry_sdk with its default integrations, with or without aiohttp's.

    sentry_sdk enables AioHttpIntegration on its own when aiohttp is installed; the
    second variant turns off such auto-enabling, as users do who run without it.
    """
    transport = CapturingTransport()
    with_aiohttp: bool = request.param
    sentry_sdk.init(
        dsn=DSN,
        transport=transport,
        # Not ``disabled_integrations``: it cannot take out an integration that an
        # earlier init in the same process has installed.
        auto_enabling_integrations=with_aiohttp,
    )
    client = sentry_sdk.get_client()
    assert (client.get_integration(AioHttpIntegration) is not None) is with_aiohttp
    assert client.get_integration("logging") is not None
    yield transport
    client.close()
    sentry_sdk.get_global_scope().set_client(None)


def server_logger() -> logging.Logger:
    """The logger for aiohttp's server lines under the Sentry set-up of the running test.

    Once set up in a process, the AioHttpIntegration has Sentry ignore the logger
    "aiohttp.server" for good; without the integration, the server writes its lines to
    a logger of its own, as in a process that never set the integration up.
    """
    with_aiohttp = sentry_sdk.get_client().get_integration(AioHttpIntegration) is not None
    return logging.getLogger("aiohttp.server" if with_aiohttp else "tests.server")


async def capture(request: web.Request) -> web.Response:
    """Capture a message named by the query, after and before a pause of its own length."""
    name = request.query["name"]
    pause = float(request.query.get("pause", "0"))
    await asyncio.sleep(pause)
    sentry_sdk.capture_message(name)
    await asyncio.sleep(pause)
    return web.Response(text=name)


async def log_error(request: web.Request) -> web.Response:
    log.error("something went wrong in %s", request.path)
    return web.Response(text="logged")


async def fail(request: web.Request) -> web.Response:
    raise ValueError("handler failed")


async def unavailable(request: web.Request) -> web.Response:
    raise web.HTTPServiceUnavailable()


def make_app(middleware: RequestIdMiddleware) -> web.Application:
    app = web.Application(middlewares=[middleware])
    app.router.add_get("/capture", capture)
    app.router.add_get("/log-error", log_error)
    app.router.add_get("/fail", fail)
    app.router.add_get("/unavailable", unavailable)
    return app


async def test_events_of_a_request_carry_its_ids(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    sentry_transport: CapturingTransport,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """A captured message, a logged error and an unhandled exception are all tagged.

    The exception goes on to aiohttp and Sentry as without the library: with the
    AioHttpIntegration it is that integration's unhandled "aiohttp" event; without it,
    the event LoggingIntegration makes of aiohttp's "Error handling request" line.
    """
    with_aiohttp = sentry_sdk.get_client().get_integration(AioHttpIntegration) is not None
    middleware = RequestIdMiddleware(tracer_provider=provider)
    app = make_app(middleware)
    app.on_response_prepare.append(middleware.on_response_prepare)
    server = await aiohttp_server(app, logger=server_logger())
    client: TestClient[web.Request, None] = await aiohttp_client(server)
    responses = [
        await client.get("/capture", params={"name": "captured in a request"}),
        await client.get("/log-error"),
        await client.get("/fail"),
    ]
    assert [response.status for response in responses] == [200, 200, 500]
    spans = {span.attributes["request.id"]: span for span in exporter.get_finished_spans()}  # type: ignore[index]

    failure = [event for event in sentry_transport.events() if "exception" in event]
    (failure_event,) = failure
    (exception,) = failure_event["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("ValueError", "handler failed")
    mechanism = exception["mechanism"]
    if with_aiohttp:
        assert (mechanism["type"], mechanism["handled"]) == ("aiohttp", False)
    else:
        assert message_of(failure_event) == "Error handling request from 127.0.0.1"
        assert failure_event["logger"] == "tests.server"
    events = [
        sentry_transport.event_with_message("captured in a request"),
        sentry_transport.event_with_message("something went wrong in /log-error"),
        failure_event,
    ]
    for response, event in zip(responses, events, strict=True):
        short_id = response.headers["X-Request-ID"]
        span_context = spans[short_id].get_span_context()
        assert span_context is not None
        assert id_tags(event) == {
            "request_id": short_id,
            "trace_id": format(span_context.trace_id, "032x"),
        }
    assert len(sentry_transport.events()) == 3
    sentry_sdk.capture_message("after the requests")
    assert id_tags(sentry_transport.event_with_message("after the requests")) == {}


def sentry_events_of_a_crash(transport: CapturingTransport) -> list[tuple[Any, ...]]:
    """What Sentry got for a crashed request, minus what differs from run to run."""
    found = []
    for event in transport.events():
        for value in event.get("exception", {}).get("values", []):
            mechanism = value.get("mechanism", {})
            found.append(
                (
                    event.get("level"),
                    value["type"],
                    value["value"],
                    mechanism.get("type"),
                    mechanism.get("handled"),
                    message_of(event),
                )
            )
    return found


@pytest.mark.parametrize("event_level", [None, logging.ERROR], ids=["events-off", "events-on"])
async def test_aiohttp_integration_captures_what_it_captures_without_the_library(
    aiohttp_client: AiohttpClient, event_level: int | None
) -> None:
    """AioHttpIntegration gets the handler's exception as its own unhandled "aiohttp" event,
    exactly as without the library, also when LoggingIntegration makes no events; the
    library adds only its tags."""
    captured = {}
    for name, middlewares in (("bare", []), ("ours", [RequestIdMiddleware()])):
        transport = CapturingTransport()
        sentry_sdk.init(
            dsn=DSN,
            transport=transport,
            integrations=[AioHttpIntegration(), LoggingIntegration(event_level=event_level)],
        )
        try:
            app = web.Application(middlewares=middlewares)
            app.router.add_get("/fail", fail)
            client = await aiohttp_client(app)
            response = await client.get("/fail")
            assert response.status == 500
            captured[name] = (sentry_events_of_a_crash(transport), transport.events())
        finally:
            sentry_sdk.get_client().close()
            sentry_sdk.get_global_scope().set_client(None)
    assert captured["ours"][0] == captured["bare"][0]
    assert captured["ours"][0] == [
        ("error", "ValueError", "handler failed", "aiohttp", False, None)
    ]
    (event,) = captured["ours"][1]
    assert set(id_tags(event)) == {"request_id", "trace_id"}
    (bare_event,) = captured["bare"][1]
    assert id_tags(bare_event) == {}


async def test_a_faulty_sentry_hook_fails_no_request(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    sentry_transport: CapturingTransport,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: LineCollector,
) -> None:
    """A scope that refuses our tags (a stand-in for a Sentry release that changed: the real
    Scope with set_tag made to raise) costs the request nothing: its answer, its header,
    its access line, and the handler's exception still reaching aiohttp and Sentry."""

    def refuse(self: object, key: str, value: object) -> None:
        raise RuntimeError("this Sentry refuses tags")

    monkeypatch.setattr(sentry_sdk.Scope, "set_tag", refuse)
    middleware = RequestIdMiddleware()
    app = make_app(middleware)
    app.on_response_prepare.append(middleware.on_response_prepare)
    server = await aiohttp_server(
        app, access_log_class=RequestIdAccessLogger, logger=server_logger()
    )
    client: TestClient[web.Request, None] = await aiohttp_client(server)
    ok = await client.get("/capture", params={"name": "untagged but sent"})
    assert (ok.status, await ok.text()) == (200, "untagged but sent")
    assert ID_RE.fullmatch(ok.headers["X-Request-ID"])
    failed = await client.get("/fail")
    assert failed.status == 500
    assert ID_RE.fullmatch(failed.headers["X-Request-ID"])
    access = [r for r in log_lines.records if r.name == "aiohttp.access"]
    assert [vars(r)["request_id"] for r in access] == [
        ok.headers["X-Request-ID"],
        failed.headers["X-Request-ID"],
    ]
    assert sentry_transport.event_with_message("untagged but sent")
    assert [e for e in sentry_transport.events() if "exception" in e]


async def test_concurrent_requests_never_see_each_others_tags(
    aiohttp_client: AiohttpClient, sentry_transport: CapturingTransport
) -> None:
    """50 interleaved requests each tag their own event, and events outside requests get none."""
    client = await aiohttp_client(make_app(RequestIdMiddleware()))
    sentry_sdk.capture_message("before the requests")

    async def get(number: int) -> tuple[str, str]:
        # Pauses of scrambled lengths make the requests finish in another order than
        # they started, so each one captures while others are half done.
        pause = ((number * 37) % CONCURRENT_REQUESTS) / 2000
        params = {"name": f"request {number}", "pause": str(pause)}
        response = await client.get("/capture", params=params)
        assert response.status == 200
        return params["name"], response.headers["X-Request-ID"]

    answers = await asyncio.gather(*(get(number) for number in range(CONCURRENT_REQUESTS)))
    sentry_sdk.capture_message("after the requests")

    assert len({short_id for _, short_id in answers}) == CONCURRENT_REQUESTS
    trace_ids = set()
    for name, short_id in answers:
        tags = id_tags(sentry_transport.event_with_message(name))
        assert tags["request_id"] == short_id
        trace_ids.add(tags["trace_id"])
    assert len(trace_ids) == CONCURRENT_REQUESTS
    for outside in ("before the requests", "after the requests"):
        assert id_tags(sentry_transport.event_with_message(outside)) == {}
    assert current_request_id() is None


async def test_tasks_spawned_in_a_request_tag_their_events(
    aiohttp_client: AiohttpClient, sentry_transport: CapturingTransport
) -> None:
    """A task started by the handler inherits the request's scope, tags and all."""

    async def spawn(request: web.Request) -> web.Response:
        await asyncio.create_task(_capture_later("from a spawned task"))
        return web.Response()

    app = web.Application(middlewares=[RequestIdMiddleware()])
    app.router.add_get("/spawn", spawn)
    client = await aiohttp_client(app)
    response = await client.get("/spawn")

    event = sentry_transport.event_with_message("from a spawned task")
    assert id_tags(event)["request_id"] == response.headers["X-Request-ID"]


async def _capture_later(message: str) -> None:
    await asyncio.sleep(0)
    sentry_sdk.capture_message(message)


async def test_5xx_http_exception_captured_by_aiohttp_integration_is_tagged(
    aiohttp_client: AiohttpClient,
) -> None:
    """AioHttpIntegration captures a raised 5xx after the middlewares return; it is tagged too."""
    transport = CapturingTransport()
    sentry_sdk.init(dsn=DSN, transport=transport)
    try:
        assert sentry_sdk.get_client().get_integration(AioHttpIntegration) is not None
        client = await aiohttp_client(make_app(RequestIdMiddleware()))
        response = await client.get("/unavailable")
        assert response.status == 503
        (event,) = transport.events()
        assert event["exception"]["values"][0]["type"] == "HTTPServiceUnavailable"
        assert id_tags(event)["request_id"] == response.headers["X-Request-ID"]
        sentry_sdk.capture_message("after the request")
        assert id_tags(transport.event_with_message("after the request")) == {}
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


async def test_sentry_false_turns_the_tags_off(
    aiohttp_client: AiohttpClient, sentry_transport: CapturingTransport
) -> None:
    """With ``sentry=False`` events of a request still reach Sentry, but without our tags."""
    client = await aiohttp_client(make_app(RequestIdMiddleware(sentry=False)))
    response = await client.get("/capture", params={"name": "untagged"})
    assert response.headers["X-Request-ID"]

    assert id_tags(sentry_transport.event_with_message("untagged")) == {}


async def test_requests_work_when_sentry_is_not_initialized(
    aiohttp_client: AiohttpClient,
) -> None:
    """sentry_sdk imported but never initialized: requests run, and nothing is captured."""
    assert not sentry_sdk.get_client().is_active()
    client = await aiohttp_client(make_app(RequestIdMiddleware(sentry=True)))
    response = await client.get("/capture", params={"name": "nowhere"})

    assert response.status == 200
    assert response.headers["X-Request-ID"]


@pytest.mark.parametrize("module", ["otel_reqid_logging", "otel_reqid_logging.compat"])
def test_import_does_not_import_sentry_sdk(module: str) -> None:
    """Importing the package (or its compat module) leaves sentry_sdk unimported."""
    code = f"import sys, {module}; print('sentry_sdk' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


SENTRY_1X = "sentry-sdk==1.45.1"


@pytest.fixture(scope="module")
def sentry_1x_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel with sentry-sdk 1.x (the last 1.x release), everything else as pinned."""
    root = tmp_path_factory.mktemp("sentry1x")
    constraints = root / "constraints.txt"
    pins = CONSTRAINTS.read_text().splitlines()
    constraints.write_text("\n".join(pin for pin in pins if not pin.startswith("sentry-sdk")))
    python = make_venv(root / "venv")
    run(uv(), "pip", "install", "--quiet", "--python", python, "--constraint", constraints,
        wheel, SENTRY_1X)  # fmt: skip
    return python


# sentry-sdk 1.x copies each frame's locals with copy.copy(), which Python 3.13's
# FrameLocalsProxy (PEP 667) refuses: the event of an exception is dropped. No 1.x release
# has the fix (the 2.x line does), so on 3.13 1.x needs include_local_variables=False.
SENTRY_1X_DROPS_EXCEPTIONS_WITH_LOCALS = sys.version_info >= (3, 13)


@pytest.mark.parametrize("local_variables", [True, False], ids=["locals", "no-locals"])
@pytest.mark.parametrize("integration", ["hub", "aiohttp"])
def test_sentry_sdk_1x_requests_work_and_are_tagged(
    integration: str, local_variables: bool, sentry_1x_python: Path, tmp_path: Path
) -> None:
    """With sentry-sdk 1.x, which has no get_client, every request used to end in a 500
    with no request id header. Now each gets its answer and header, and each event its own
    request's tags, with or without 1.x's aiohttp integration; none outside a request.
    On Python 3.13, 1.x sends those events only without local variables (docs/sentry.md):
    with them it drops every exception's event itself, which this test holds it to."""
    check = tmp_path / "check.py"
    shutil.copy(ROOT / "tests" / "sentry_1x_check.py", check)
    argv = ["aiohttp"] if integration == "aiohttp" else []
    if not local_variables:
        argv.append("no-locals")
    report = json.loads(run(sentry_1x_python, check, *argv, cwd=tmp_path))

    assert report["sentry"].startswith("1.")
    answers = report["answers"]
    assert {answer["status"] for answer in answers.values()} == {500}  # the handlers fail
    by_request_id = {answer["request_id"]: n for n, answer in answers.items()}
    assert "" not in by_request_id
    *in_requests, outside = report["tags"]
    assert "request_id" not in outside
    if local_variables and SENTRY_1X_DROPS_EXCEPTIONS_WITH_LOCALS:
        assert in_requests == []  # 1.x's own failure, on every event with a traceback
        return
    assert len(in_requests) == len(answers)
    for tags in in_requests:
        assert by_request_id[tags["request_id"]] == tags["n"], tags
        assert len(tags["trace_id"]) == 32
    assert {tags["n"] for tags in in_requests} == set(answers)


class FakeSentry:
    """A loopback stand-in for sentry.io: keeps the envelopes and OTLP exports it receives.

    aiohttp undoes the gzip Content-Encoding both senders use before the body is read.
    """

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.otlp_spans: list[Span] = []
        self.otlp_auth: list[str] = []
        self.app = web.Application()
        self.app.router.add_post("/api/1/envelope/", self._envelope)
        self.app.router.add_post("/api/1/integration/otlp/v1/traces/", self._otlp)

    async def _envelope(self, request: web.Request) -> web.Response:
        self.envelopes.append(Envelope.deserialize(await request.read()))
        return web.json_response({})

    async def _otlp(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        self.otlp_auth.append(request.headers.get("X-Sentry-Auth", ""))
        for resource_spans in export.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.otlp_spans.extend(scope_spans.spans)
        return web.Response()

    def event_with_message(self, message: str) -> dict[str, Any]:
        """Return the one event whose message (or log entry) is ``message``."""
        events = (envelope.get_event() for envelope in self.envelopes)
        (event,) = [e for e in events if e is not None and message_of(cast(Any, e)) == message]
        return cast("dict[str, Any]", event)

    def exception_event(self) -> dict[str, Any]:
        """Return the one event that carries an exception."""
        events = (envelope.get_event() for envelope in self.envelopes)
        (event,) = [e for e in events if e is not None and "exception" in e]
        return cast("dict[str, Any]", event)

    def span_with_request_id(self, short_id: str) -> Span:
        """Return the one exported span whose ``request.id`` attribute is ``short_id``."""
        (span,) = [
            span
            for span in self.otlp_spans
            for attribute in span.attributes
            if attribute.key == "request.id" and attribute.value.string_value == short_id
        ]
        return span


async def test_otlp_integration_makes_sentry_trace_id_the_opentelemetry_one(
    aiohttp_server: AiohttpServer,
) -> None:
    """Sentry's OTLPIntegration links events to the OpenTelemetry trace this library tags.

    The example app runs as its own process (the integration sets process-wide state
    once), with a DSN pointing at a loopback stand-in for Sentry that receives both the
    events and the spans the integration exports over OTLP.
    """
    sentry = FakeSentry()
    server = await aiohttp_server(sentry.app)
    env = {"SENTRY_DSN": f"http://public@127.0.0.1:{server.port}/1"}
    command = [sys.executable, str(EXAMPLES / "sentry_otlp.py")]

    stack = ExitStack()
    app = stack.enter_context(run_app_process(command, env))
    try:
        async with ClientSession() as session:
            async with session.get(f"{app.url}/", headers={"traceparent": TRACEPARENT}) as hello:
                assert hello.status == 200
            async with session.get(f"{app.url}/fail") as fail:
                assert fail.status == 500
    finally:
        # Stopping the app flushes its events and spans to the stand-in, which this
        # test's loop serves: wait for the stop in a thread.
        await asyncio.to_thread(stack.close)
    output = app.output
    ids = {"hello": hello.headers["X-Request-ID"], "fail": fail.headers["X-Request-ID"]}

    events = {
        "hello": sentry.event_with_message("hello from a request"),
        "fail": sentry.exception_event(),
    }
    (exception,) = events["fail"]["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("RuntimeError", "something broke")
    for name, event in events.items():
        trace_id = sentry.span_with_request_id(ids[name]).trace_id.hex()
        assert id_tags(event) == {"request_id": ids[name], "trace_id": trace_id}
        assert event["contexts"]["trace"]["trace_id"] == trace_id
        assert any(f"[req:{ids[name]} trace:{trace_id}]" in line for line in output), output
    # The caller's W3C traceparent still decides the trace (setup_propagator=False).
    assert events["hello"]["tags"]["trace_id"] == TRACEPARENT.split("-")[1]
    assert sentry.otlp_auth
    assert all("sentry_key=public" in auth for auth in sentry.otlp_auth)
