"""Work handed to threads and tasks keeps the ids of the request that started it."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pytest_aiohttp import AiohttpClient

from otel_reqid_logging import RequestIdMiddleware, current_request_id
from otel_reqid_logging._context import request_id
from otel_reqid_logging.threads import bind_context, run_in_executor
from tests.conftest import LineCollector

log = logging.getLogger("tests.threads")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """A thread pool of the test's own, shut down afterwards."""
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-pool") as executor:
        yield executor


def work(label: str, *, suffix: str = "") -> str | None:
    """Blocking work: log a line from the thread, and tell which request id it sees."""
    log.info("in thread %s%s", label, suffix)
    return current_request_id()


def ids_of(log_lines: LineCollector, message: str) -> list[str]:
    """Return the request ids of the records whose message is ``message``."""
    return [vars(r)["request_id"] for r in log_lines.records if r.getMessage() == message]


async def serve(
    aiohttp_client: AiohttpClient, handler: Handler, provider: TracerProvider | None = None
) -> str:
    """Serve ``handler`` behind the middleware, call it once, and return the request id."""
    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    response = await client.get("/")
    assert response.status == 200, await response.text()
    return response.headers["X-Request-ID"]


async def test_plain_run_in_executor_loses_the_ids(
    aiohttp_client: AiohttpClient, log_lines: LineCollector, pool: ThreadPoolExecutor
) -> None:
    """Control: loop.run_in_executor runs the function without the request's context."""

    async def handler(request: web.Request) -> web.Response:
        seen = await asyncio.get_running_loop().run_in_executor(pool, work, "plain")
        assert seen is None
        return web.Response()

    await serve(aiohttp_client, handler)
    assert ids_of(log_lines, "in thread plain") == ["-"]


async def test_run_in_executor_keeps_the_ids(
    aiohttp_client: AiohttpClient, log_lines: LineCollector, pool: ThreadPoolExecutor
) -> None:
    """The helper runs the function in the request's context, in the given or default pool."""

    async def handler(request: web.Request) -> web.Response:
        own = await run_in_executor(pool, work, "own pool", suffix="!")
        default = await run_in_executor(None, work, "default pool")
        assert own == default == current_request_id()
        return web.Response()

    short_id = await serve(aiohttp_client, handler)
    assert ids_of(log_lines, "in thread own pool!") == [short_id]
    assert ids_of(log_lines, "in thread default pool") == [short_id]
    (own_pool_record,) = (r for r in log_lines.records if r.getMessage() == "in thread own pool!")
    assert (own_pool_record.threadName or "").startswith("test-pool")


async def test_run_in_executor_raises_what_the_function_raises(pool: ThreadPoolExecutor) -> None:
    """An exception in the thread reaches the awaiting coroutine unchanged."""

    def fail() -> None:
        raise LookupError("from the thread")

    with pytest.raises(LookupError, match="from the thread"):
        await run_in_executor(pool, fail)


async def test_to_thread_and_tasks_keep_the_ids(
    aiohttp_client: AiohttpClient, log_lines: LineCollector
) -> None:
    """asyncio.to_thread and tasks spawned in a request carry its ids, even after it ended."""
    response_sent = asyncio.Event()
    late_task: list[asyncio.Task[None]] = []

    async def late() -> None:
        await response_sent.wait()
        log.info("task after the response")

    async def soon() -> None:
        log.info("task during the request")

    async def handler(request: web.Request) -> web.Response:
        await asyncio.to_thread(work, "to_thread")
        await asyncio.create_task(soon())
        late_task.append(asyncio.create_task(late()))
        return web.Response()

    short_id = await serve(aiohttp_client, handler)
    assert current_request_id() is None
    response_sent.set()
    await late_task[0]
    assert ids_of(log_lines, "in thread to_thread") == [short_id]
    assert ids_of(log_lines, "task during the request") == [short_id]
    assert ids_of(log_lines, "task after the response") == [short_id]


async def test_bind_context_carries_ids_into_a_thread(
    aiohttp_client: AiohttpClient, log_lines: LineCollector
) -> None:
    """A threading.Thread loses the ids (control); with bind_context it keeps them."""

    async def handler(request: web.Request) -> web.Response:
        threads = [
            threading.Thread(target=work, args=("plain thread",)),
            threading.Thread(target=bind_context(work), args=("bound thread",)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            await asyncio.to_thread(thread.join)
        return web.Response()

    short_id = await serve(aiohttp_client, handler)
    assert ids_of(log_lines, "in thread plain thread") == ["-"]
    assert ids_of(log_lines, "in thread bound thread") == [short_id]


async def test_bound_callable_runs_in_many_threads_at_once(
    aiohttp_client: AiohttpClient, log_lines: LineCollector
) -> None:
    """One bound callable may run in several threads at the same moment.

    A contextvars.Context can be entered by one thread at a time; the barrier makes all
    eight calls be inside the bound function together, so sharing one Context would fail.
    """
    barrier = threading.Barrier(8, timeout=10)
    errors: list[BaseException] = []

    def meet(label: str) -> None:
        try:
            barrier.wait()
            work(label)
        except BaseException as error:  # collected, then asserted on in the test
            errors.append(error)

    async def handler(request: web.Request) -> web.Response:
        bound = bind_context(meet)
        threads = [threading.Thread(target=bound, args=("together",)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            await asyncio.to_thread(thread.join)
        return web.Response()

    short_id = await serve(aiohttp_client, handler)
    assert errors == []
    assert ids_of(log_lines, "in thread together") == [short_id] * 8


async def test_thread_changes_and_ids_stay_in_the_thread(aiohttp_client: AiohttpClient) -> None:
    """What the function sets stays in its call, and the worker thread keeps no ids after."""
    single = ThreadPoolExecutor(max_workers=1)

    def overwrite() -> str | None:
        request_id.set("changed-in-thread")
        return current_request_id()

    async def handler(request: web.Request) -> web.Response:
        before = current_request_id()
        assert await run_in_executor(single, overwrite) == "changed-in-thread"
        assert current_request_id() == before
        return web.Response()

    try:
        await serve(aiohttp_client, handler)
        # The same (only) worker thread, called without the helper, sees no request.
        assert await asyncio.get_running_loop().run_in_executor(single, work, "after") is None
    finally:
        single.shutdown()


async def test_concurrent_requests_share_a_pool_without_mixing_ids(
    aiohttp_client: AiohttpClient, log_lines: LineCollector, pool: ThreadPoolExecutor
) -> None:
    """Forty requests at once, their work on four shared threads: each line has its own id."""

    async def handler(request: web.Request) -> web.Response:
        label = request.query["n"]
        for step in range(3):
            seen = await run_in_executor(pool, work, label, suffix=f" step {step}")
            assert seen == current_request_id()
            await asyncio.sleep(0)
        return web.Response()

    app = web.Application(middlewares=[RequestIdMiddleware()])
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)

    async def call(n: int) -> str:
        response = await client.get("/", params={"n": str(n)})
        assert response.status == 200
        return response.headers["X-Request-ID"]

    short_ids = await asyncio.gather(*(call(n) for n in range(40)))
    assert len(set(short_ids)) == 40
    for n, short_id in enumerate(short_ids):
        for step in range(3):
            assert ids_of(log_lines, f"in thread {n} step {step}") == [short_id]


async def test_spans_made_in_threads_are_children_of_the_request(
    aiohttp_client: AiohttpClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The helper carries OpenTelemetry's context too: a thread's span joins the request's trace.

    Without it (the control) the same span starts a trace of its own.
    """
    tracer = provider.get_tracer(__name__)

    def traced(name: str) -> None:
        with tracer.start_as_current_span(name):
            pass

    async def handler(request: web.Request) -> web.Response:
        await run_in_executor(None, traced, "with helper")
        await asyncio.get_running_loop().run_in_executor(None, traced, "without helper")
        return web.Response()

    await serve(aiohttp_client, handler, provider)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    (server,) = [s for s in spans.values() if s.kind is SpanKind.SERVER]
    server_context = server.get_span_context()
    assert server_context is not None
    child = spans["with helper"]
    assert child.parent is not None
    assert child.parent.span_id == server_context.span_id
    orphan = spans["without helper"]
    assert orphan.parent is None
    assert trace.get_current_span().get_span_context().is_valid is False
