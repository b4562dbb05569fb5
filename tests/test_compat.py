"""Code written for aiohttp-request-id-logging keeps working with only its import line changed."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from aiohttp import ClientSession, web
from aiohttp.typedefs import Handler
from opentelemetry.sdk.trace import TracerProvider
from pytest_aiohttp import AiohttpClient, AiohttpServer

import otel_reqid_logging
from otel_reqid_logging import compat
from otel_reqid_logging._ids import ALPHABET
from otel_reqid_logging.compat import (
    REQUEST_ID_KEY,
    RequestIdContextAccessLogger,
    RequestIdKeyAlreadySetError,
    RequestIdMiddleware,
    noop,
    request_id,
    request_id_middleware,
    setup_logging_request_id_prefix,
)
from tests.subprocess_app import ROOT, run_app_process

# The format of the ancestor's README.
ANCESTOR_FORMAT = (
    "%(asctime)s [%(threadName)s] %(name)-37s %(levelname)5s: %(requestIdPrefix)s%(message)s"
)
ID = f"[{ALPHABET}]{{8}}"
log = logging.getLogger("tests.compat_app")
JOB: web.AppKey[asyncio.Task[None]] = web.AppKey("job")


class Lines(logging.Handler):
    """Collects every line, formatted as the ancestor's README formats them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(ANCESTOR_FORMAT))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def prefixed(self, short_id: str) -> list[str]:
        """Return the messages of the lines prefixed with ``[req:short_id] ``."""
        marker = f": [req:{short_id}] "
        return [line.split(marker, 1)[1] for line in self.lines if marker in line]


@pytest.fixture
def lines() -> Iterator[Lines]:
    """Log as the ancestor's README does, without installing anything of ours."""
    handler = Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)


async def hello(request: web.Request) -> web.Response:
    log.info("Doing something")
    keys = (request["request_id"], request[REQUEST_ID_KEY], request_id.get())
    return web.json_response(keys)


async def fail(request: web.Request) -> web.Response:
    raise RuntimeError("test exception")


def make_app(middleware: RequestIdMiddleware) -> web.Application:
    app = web.Application(middlewares=[middleware])
    app.router.add_get("/", hello)
    app.router.add_get("/f", fail)
    return app


async def test_older_readme_names_put_the_prefix_on_every_line(
    aiohttp_server: AiohttpServer, lines: Lines
) -> None:
    """request_id_middleware, the prefix setup and the context access logger work as before.

    The start line, the handler's line and the access line carry the id of the
    response header, which every way of reading the id in the handler agrees on.
    """
    setup_logging_request_id_prefix()
    app = make_app(request_id_middleware())
    server = await aiohttp_server(app, access_log_class=RequestIdContextAccessLogger)
    log.info("outside any request")
    async with ClientSession() as session, session.get(server.make_url("/")) as response:
        keys = await response.json()
        short_id = response.headers["X-Request-Id"]

    assert re.fullmatch(ID, short_id)
    assert keys == [short_id, short_id, short_id]
    messages = lines.prefixed(short_id)
    assert messages[:2] == ["Processing GET / (tests.test_compat:hello)", "Doing something"]
    assert re.fullmatch(r'127\.0\.0\.1 \[.*\] "GET / HTTP/1\.1" 200 .*', messages[2])
    assert len(messages) == 3
    assert any(line.endswith(": outside any request") for line in lines.lines)


async def test_unhandled_exception_is_logged_with_the_prefix(
    aiohttp_client: AiohttpClient, lines: Lines
) -> None:
    """An exception in the handler is aiohttp's to answer (its 500); its error line carries
    the request's prefix."""
    setup_logging_request_id_prefix()
    middleware = request_id_middleware()
    app = make_app(middleware)
    app.on_response_prepare.append(middleware.on_response_prepare)
    client = await aiohttp_client(app)
    response = await client.get("/f")

    assert response.status == 500
    assert (await response.text()).startswith("500 Internal Server Error\n\n")
    (error,) = [
        message
        for message in lines.prefixed(response.headers["X-Request-Id"])
        if message.startswith("Error handling request from 127.0.0.1\n")
    ]
    assert error.endswith("\nRuntimeError: test exception")


async def test_header_keeps_the_ancestors_spelling(aiohttp_client: AiohttpClient) -> None:
    """The response header is written ``X-Request-Id`` on the wire, as before, or renamed."""
    client = await aiohttp_client(make_app(RequestIdMiddleware()))
    response = await client.get("/")
    assert (b"X-Request-Id", response.headers["X-Request-Id"].encode()) in response.raw_headers

    renamed = RequestIdMiddleware(request_id_header_name="X-Demo-Request-Id")
    client = await aiohttp_client(make_app(renamed))
    response = await client.get("/")
    assert "X-Request-Id" not in response.headers
    assert re.fullmatch(ID, response.headers["X-Demo-Request-Id"])


@pytest.mark.parametrize(
    ("middleware", "start_line"),
    [
        (request_id_middleware(log_function_name=False), "Processing GET /"),
        (request_id_middleware(log_request_start=False), None),
        (RequestIdMiddleware(log_request_start=noop), None),
    ],
    ids=["without-function-name", "start-line-off", "noop"],
)
async def test_start_line_options(
    aiohttp_client: AiohttpClient,
    lines: Lines,
    middleware: RequestIdMiddleware,
    start_line: str | None,
) -> None:
    """The ancestor's options shape or turn off the start line."""
    setup_logging_request_id_prefix()
    client = await aiohttp_client(make_app(middleware))
    response = await client.get("/")

    messages = lines.prefixed(response.headers["X-Request-Id"])
    expected = ["Doing something"] if start_line is None else [start_line, "Doing something"]
    assert messages == expected


async def test_injected_start_line_sees_the_request_id(aiohttp_client: AiohttpClient) -> None:
    """A ``log_request_start`` callable runs inside the request, with the id already stored."""
    seen: list[tuple[str, str | None, Handler]] = []

    def record_start(request: web.Request, handler: Handler) -> None:
        seen.append((request[REQUEST_ID_KEY], request_id.get(), handler))

    client = await aiohttp_client(make_app(RequestIdMiddleware(log_request_start=record_start)))
    response = await client.get("/")

    short_id = response.headers["X-Request-Id"]
    assert seen == [(short_id, short_id, hello)]


async def test_fallback_key_can_be_turned_off(aiohttp_client: AiohttpClient) -> None:
    """``no_fallback_request_id_key`` stores the id only under REQUEST_ID_KEY."""
    stored: list[bool] = []

    async def check(request: web.Request) -> web.Response:
        stored.append("request_id" in request)
        return web.Response()

    app = web.Application(middlewares=[RequestIdMiddleware(no_fallback_request_id_key=True)])
    app.router.add_get("/", check)
    client = await aiohttp_client(app)
    await client.get("/")
    assert stored == [False]


async def test_added_twice_it_starts_the_request_once(
    aiohttp_client: AiohttpClient, lines: Lines
) -> None:
    """Two compat middlewares (e.g. app and sub-app) log one start line and keep one id."""
    setup_logging_request_id_prefix()
    app = web.Application(middlewares=[RequestIdMiddleware(), RequestIdMiddleware()])
    app.router.add_get("/", hello)
    client = await aiohttp_client(app)
    response = await client.get("/")

    short_id = response.headers["X-Request-Id"]
    assert await response.json() == [short_id, short_id, short_id]
    messages = lines.prefixed(short_id)
    assert messages.count("Processing GET / (tests.test_compat:hello)") == 1


@pytest.mark.parametrize("key", ["typed", "string"])
async def test_id_set_by_something_else_raises_the_ancestors_error(
    aiohttp_client: AiohttpClient, key: str
) -> None:
    """A request id stored by other code before the middleware runs is refused, as before."""
    caught: list[RequestIdKeyAlreadySetError] = []

    @web.middleware
    async def sets_an_id(request: web.Request, handler: Handler) -> web.StreamResponse:
        if key == "typed":
            request[REQUEST_ID_KEY] = "theirs"
        else:
            compat._set_fallback_key(request, "theirs")
        try:
            return await handler(request)
        except RequestIdKeyAlreadySetError as error:
            caught.append(error)
            return web.Response(status=409)

    app = web.Application(middlewares=[sets_an_id, RequestIdMiddleware()])
    app.router.add_get("/", hello)
    client = await aiohttp_client(app)
    response = await client.get("/")
    assert response.status == 409
    (error,) = caught
    assert error.existing_request_id == "theirs"
    assert "request id 'theirs'" in str(error)
    assert "X-Request-Id" not in response.headers


def test_other_prefix_formats_are_refused() -> None:
    """A custom prefix format fails loudly instead of being silently ignored."""
    with pytest.raises(ValueError, match="requestIdPrefix only as"):
        setup_logging_request_id_prefix("<{request_id}> ")


def test_compat_names_are_the_packages_own() -> None:
    """The ContextVar, request key and access logger are the package's objects, not copies."""
    assert compat.request_id is otel_reqid_logging.request_id
    assert compat.REQUEST_ID_KEY is otel_reqid_logging.REQUEST_ID_KEY
    assert compat.RequestIdAccessLogger is otel_reqid_logging.RequestIdAccessLogger
    assert RequestIdContextAccessLogger is otel_reqid_logging.RequestIdAccessLogger
    assert issubclass(RequestIdMiddleware, otel_reqid_logging.RequestIdMiddleware)


def test_top_level_reexports_the_older_names() -> None:
    """``from otel_reqid_logging import request_id_middleware`` (and co.) works as before."""
    for name in (
        "request_id_middleware",
        "setup_logging_request_id_prefix",
        "RequestIdContextAccessLogger",
    ):
        assert getattr(otel_reqid_logging, name) is getattr(compat, name)
        assert name in otel_reqid_logging.__all__


async def test_ancestor_readme_example_runs_unchanged() -> None:
    """The ancestor's README example, with only its import line changed, logs as it did.

    It runs as its own process in Python's development mode, which shows warnings (such
    as aiohttp's NotAppKeyWarning for the plain string key) on its output.
    """
    stack = ExitStack()
    command = [sys.executable, "-X", "dev", str(ROOT / "examples" / "ancestor_readme.py")]
    app = stack.enter_context(run_app_process(command, {"HOST": "127.0.0.1"}))
    try:
        async with ClientSession() as session:
            short_ids = []
            for _ in range(3):
                async with session.get(f"{app.url}/") as response:
                    assert await response.text() == "Hello, world!"
                    short_ids.append(response.headers["X-Request-Id"])
    finally:
        stack.close()

    assert len(set(short_ids)) == 3
    for short_id in short_ids:
        assert re.fullmatch(ID, short_id)
        marker = f"INFO: [req:{short_id}] "
        messages = [line.split(marker, 1)[1] for line in app.output if marker in line]
        assert messages[0] == "Processing GET / (__main__:hello)", app.output
        assert re.fullmatch(r'127\.0\.0\.1 \[.*\] "GET / HTTP/1\.1" 200 .*', messages[1])
        assert len(messages) == 2
    assert not [line for line in app.output if "Warning" in line], app.output


async def test_a_request_id_the_app_sets_outside_a_request_is_on_its_lines(
    aiohttp_server: AiohttpServer, lines: Lines, provider: TracerProvider
) -> None:
    """A background job setting the ancestor's request_id ContextVar gets it on its records.

    As in aiohttp-request-id-logging, the ContextVar is what the prefix shows, in a task
    the app started itself (here beside a span of its own, whose trace the records carry);
    requests keep their own ids, and lines outside both carry none.
    """
    setup_logging_request_id_prefix()
    job_done = asyncio.Event()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    async def nightly_job() -> None:
        request_id.set("job-42")
        log.info("job started")
        with provider.get_tracer("tests.compat").start_as_current_span("nightly") as span:
            log.info("job inside its span")
        job_done.set()
        trace_ids.append(format(span.get_span_context().trace_id, "032x"))

    trace_ids: list[str] = []

    async def start_job(app: web.Application) -> None:
        app[JOB] = asyncio.get_running_loop().create_task(nightly_job())

    app = make_app(RequestIdMiddleware(log_request_start=noop))
    app.on_startup.append(start_job)
    keep = Keep()
    logging.getLogger().addHandler(keep)
    try:
        server = await aiohttp_server(app)
        await asyncio.wait_for(job_done.wait(), 10)
        async with ClientSession() as session, session.get(server.make_url("/")) as response:
            short_id = response.headers["X-Request-Id"]
        log.info("outside both")
    finally:
        logging.getLogger().removeHandler(keep)
    assert lines.prefixed("job-42") == ["job started", "job inside its span"]
    assert lines.prefixed(short_id) == ["Doing something"]
    assert any(line.endswith(": outside both") for line in lines.lines)
    in_span = next(r for r in records if r.getMessage() == "job inside its span")
    assert (vars(in_span)["request_id"], vars(in_span)["trace_id"]) == ("job-42", trace_ids[0])
    outside = next(r for r in records if r.getMessage() == "outside both")
    assert (vars(outside)["request_id"], vars(outside)["requestIdPrefix"]) == ("-", "")
