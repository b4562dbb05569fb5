"""add_request_ids: structlog events carry the same ids as the stdlib records beside them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aiohttp import ClientSession, web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pytest_aiohttp import AiohttpServer
from structlog.contextvars import bind_contextvars, clear_contextvars, merge_contextvars
from structlog.stdlib import ProcessorFormatter

from otel_reqid_logging import RequestIdAccessLogger, RequestIdMiddleware, records
from otel_reqid_logging.structlog import add_request_ids
from tests.conftest import LineCollector
from tests.subprocess_app import ROOT

KEYS = ("request_id", "trace_id", "span_id")
stdlib_log = logging.getLogger("tests.shop")


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Leave structlog's global configuration and its context as they were."""
    yield
    structlog.reset_defaults()
    clear_contextvars()


async def pay(request: web.Request) -> web.Response:
    """Log with structlog and with the stdlib, around a pause that interleaves requests."""
    # aiohttp serves the requests of one connection in one task: start from a clean context.
    clear_contextvars()
    cart = request.match_info["cart"]
    bind_contextvars(cart=cart)
    log = structlog.get_logger("shop")
    log.info("charging")
    await asyncio.sleep(0.02)
    stdlib_log.info("charged cart %s", cart)
    log.info("paid")
    return web.Response(text="ok")


async def pay_concurrently(
    aiohttp_server: AiohttpServer, provider: TracerProvider, carts: range
) -> dict[str, str]:
    """Serve ``pay`` and POST to it for every cart at once; return each cart's request id."""
    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    app.router.add_post("/pay/{cart}", pay)
    server = await aiohttp_server(app, access_log_class=RequestIdAccessLogger)

    async with ClientSession() as session:

        async def call(cart: int) -> tuple[str, str]:
            async with session.post(server.make_url(f"/pay/{cart}")) as response:
                assert response.status == 200
                return str(cart), response.headers["X-Request-ID"]

        return dict(await asyncio.gather(*(call(cart) for cart in carts)))


def span_ids(exporter: InMemorySpanExporter) -> dict[str, dict[str, str]]:
    """Map each SERVER span's request id to its trace and span id as log lines show them."""
    spans = {}
    for span in exporter.get_finished_spans():
        context = span.get_span_context()
        assert span.attributes is not None
        assert context is not None
        spans[str(span.attributes["request.id"])] = {
            "trace_id": f"{context.trace_id:032x}",
            "span_id": f"{context.span_id:016x}",
        }
    return spans


def expected_ids(request_id: str, spans: dict[str, dict[str, str]]) -> dict[str, str]:
    return {"request_id": request_id, **spans[request_id]}


def ids_of(entry: dict[str, Any] | logging.LogRecord) -> dict[str, str]:
    values = entry if isinstance(entry, dict) else vars(entry)
    return {key: values[key] for key in KEYS}


async def test_json_events_carry_their_requests_ids(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_lines: LineCollector,
) -> None:
    """Concurrent requests: each JSON event has its request's ids and its bound context."""
    output = io.StringIO()
    structlog.configure(
        processors=[merge_contextvars, add_request_ids, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=output),
    )
    request_ids = await pay_concurrently(aiohttp_server, provider, range(3))
    spans = span_ids(exporter)

    events = [json.loads(line) for line in output.getvalue().splitlines()]
    assert len(events) == 6
    for cart, request_id in request_ids.items():
        mine = [e for e in events if e["cart"] == cart]
        assert [e["event"] for e in mine] == ["charging", "paid"]
        for event in mine:
            assert ids_of(event) == expected_ids(request_id, spans)
        # The stdlib record written between the two events has the very same ids.
        (record,) = [r for r in log_lines.records if r.getMessage() == f"charged cart {cart}"]
        assert ids_of(record) == expected_ids(request_id, spans)
    assert len({e["request_id"] for e in events}) == 3


async def test_console_renderer_shows_the_ids(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """ConsoleRenderer prints the ids as key=value pairs beside the event."""
    output = io.StringIO()
    structlog.configure(
        processors=[
            merge_contextvars,
            add_request_ids,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=output),
    )
    request_ids = await pay_concurrently(aiohttp_server, provider, range(2))
    spans = span_ids(exporter)
    lines = output.getvalue().splitlines()
    assert len(lines) == 4
    for cart, request_id in request_ids.items():
        mine = [line for line in lines if f"cart={cart}" in line]
        assert len(mine) == 2
        for line in mine:
            assert f"request_id={request_id}" in line
            assert f"trace_id={spans[request_id]['trace_id']}" in line
            assert f"span_id={spans[request_id]['span_id']}" in line


@pytest.mark.parametrize("record_factory", [True, False], ids=["factory", "no-factory"])
async def test_processor_formatter_gives_structlog_and_stdlib_the_same_ids(
    aiohttp_server: AiohttpServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    record_factory: bool,
) -> None:
    """Through ProcessorFormatter, structlog events, stdlib records and the access line agree.

    The access line is formatted after its request ended: its ids come from its record.
    """
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(
        ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(),
            foreign_pre_chain=[merge_contextvars, add_request_ids],
        )
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    if record_factory:
        records.install_record_factory()
    structlog.configure(
        processors=[merge_contextvars, add_request_ids, ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    request_ids = await pay_concurrently(aiohttp_server, provider, range(2))
    spans = span_ids(exporter)

    entries = [json.loads(line) for line in output.getvalue().splitlines()]
    for cart, request_id in request_ids.items():
        (access,) = [e for e in entries if f"POST /pay/{cart} HTTP/1.1" in e["event"]]
        handler_entries = [e for e in entries if e.get("cart") == cart and e is not access]
        assert [e["event"] for e in handler_entries] == [
            "charging",
            f"charged cart {cart}",
            "paid",
        ]
        for entry in [*handler_entries, access]:
            assert ids_of(entry) == expected_ids(request_id, spans), entry


def test_outside_a_request_the_record_factorys_values(
    log_lines: LineCollector, provider: TracerProvider
) -> None:
    """Outside a request, in a span or not, events get what a record made there gets."""
    tracer = provider.get_tracer(__name__)
    for in_span in (False, True):
        if in_span:
            with tracer.start_as_current_span("nightly job"):
                event = add_request_ids(None, "info", {"event": "job"})
                stdlib_log.info("job")
        else:
            event = add_request_ids(None, "info", {"event": "startup"})
            stdlib_log.info("startup")
        assert ids_of(dict(event)) == ids_of(log_lines.records[-1])
        assert event["request_id"] == "-"


def test_values_the_event_already_has_stay() -> None:
    """An id the application bound itself is not overwritten."""
    event = add_request_ids(None, "info", {"event": "x", "request_id": "from-the-app"})
    assert event["request_id"] == "from-the-app"
    assert event["trace_id"] == records.OUTSIDE_REQUEST["trace_id"]


def test_importing_the_module_does_not_import_structlog() -> None:
    """The processor needs no structlog; ``import structlog`` still finds the real one."""
    code = (
        "import sys\n"
        "import otel_reqid_logging, otel_reqid_logging.structlog\n"
        "assert 'structlog' not in sys.modules, 'structlog imported'\n"
        "import structlog\n"
        "assert hasattr(structlog, 'configure'), structlog.__file__\n"
        "print('clean')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.stdout.strip() == "clean", result.stderr


def structlog_recipes() -> list[str]:
    text = (ROOT / "docs" / "integrations.md").read_text()
    section = text.split("\n## structlog\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.mark.parametrize("recipe", structlog_recipes(), ids=["plain", "stdlib"])
def test_documented_recipes_work(recipe: str) -> None:
    """Each structlog recipe in the docs, run as written, renders events with the ids."""
    code = recipe + "\nstructlog.get_logger('recipe').info('hello')\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    (line,) = (result.stdout + result.stderr).splitlines()
    event = json.loads(line)
    assert event["event"] == "hello"
    assert ids_of(event) == dict.fromkeys(KEYS, "-")


async def test_an_event_in_a_child_span_carries_its_span_id(
    aiohttp_server: AiohttpServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """In a child span of the request, span_id is the child's; request and trace ids stay."""
    output = io.StringIO()
    structlog.configure(
        processors=[add_request_ids, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=output),
    )
    tracer = provider.get_tracer("tests.structlog")

    async def charge(request: web.Request) -> web.Response:
        log = structlog.get_logger("shop")
        log.info("in the request")
        with tracer.start_as_current_span("call bank"):
            log.info("in the child span")
        return web.Response(text="ok")

    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    app.router.add_get("/charge", charge)
    server = await aiohttp_server(app)
    async with ClientSession() as session, session.get(server.make_url("/charge")) as response:
        request_id = response.headers["X-Request-ID"]
    spans = {span.name: span.get_span_context() for span in exporter.get_finished_spans()}
    server_span, child = spans["GET /charge"], spans["call bank"]
    assert server_span is not None
    assert child is not None
    in_request, in_child = (json.loads(line) for line in output.getvalue().splitlines())
    trace_hex = f"{server_span.trace_id:032x}"
    assert ids_of(in_request) == {
        "request_id": request_id,
        "trace_id": trace_hex,
        "span_id": f"{server_span.span_id:016x}",
    }
    assert ids_of(in_child) == {
        "request_id": request_id,
        "trace_id": trace_hex,
        "span_id": f"{child.span_id:016x}",
    }
