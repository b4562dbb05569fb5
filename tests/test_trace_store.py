"""The trace store keeps its traces: Jaeger on Badger, restarted, still answers `lookup`.

The repository's ``collector/jaeger.yaml`` as docker-compose.yml runs it (Badger storage),
on the Jaeger binary the tests build, with its data directory kept between two runs.
The same config on its memory storage, restarted the same way, forgets: the control that
shows the first test's pass comes from the disk.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from otel_reqid_logging import RequestIdMiddleware, current_request_id, current_trace_id
from otel_reqid_logging.export import configure_tracing
from otel_reqid_logging.lookup._cli import EXIT_FOUND, EXIT_NOT_FOUND, run
from tests.tools import JaegerServer, running_jaeger

# The real Jaeger, started and restarted here.
pytestmark = [pytest.mark.usefixtures("no_otel_environment"), pytest.mark.external_tool]

# Jaeger's config batches for 200 ms before it writes.
ARRIVAL_WAIT_S = 15.0


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"request_id": current_request_id(), "trace_id": current_trace_id()})


async def one_request(
    jaeger: JaegerServer,
    service: str,
    aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """One request of an app exporting over OTLP to ``jaeger``; its ids, as the app saw them."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_http_endpoint)
    provider = configure_tracing(service_name=service)
    app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=provider)])
    app.router.add_get("/hello", hello)
    client = await aiohttp_client(app)
    response = await client.get("/hello")
    ids: dict[str, str] = await response.json()
    assert response.headers["X-Request-ID"] == ids["request_id"]
    await client.close()
    await asyncio.to_thread(provider.shutdown)
    return ids


async def lookup(
    jaeger: JaegerServer, service: str, query: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """`otel-reqid-logging lookup --backend jaeger QUERY`: its exit code and output."""
    argv = ["--backend", "jaeger", "--jaeger-url", jaeger.query_url, "--service", service, query]
    code = await asyncio.to_thread(run, argv)
    out, err = capsys.readouterr()
    assert code in (EXIT_FOUND, EXIT_NOT_FOUND), err
    return code, out


async def wait_until_found(
    jaeger: JaegerServer, service: str, query: str, capsys: pytest.CaptureFixture[str]
) -> str:
    deadline = time.monotonic() + ARRIVAL_WAIT_S
    while True:
        code, out = await lookup(jaeger, service, query, capsys)
        if code == EXIT_FOUND:
            return out
        assert time.monotonic() < deadline, f"{query} not in Jaeger after {ARRIVAL_WAIT_S} s"
        await asyncio.sleep(0.3)


def assert_shows_the_request(out: str, ids: dict[str, str], service: str) -> None:
    assert f"trace {ids['trace_id']}  (1 span, service {service})" in out, out
    assert f"SERVER  request.id={ids['request_id']}" in out, out


async def test_badger_keeps_traces_across_a_restart(
    tmp_path: Path,
    aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A request's trace, written to Jaeger on Badger, is found by request id and by trace
    id after Jaeger is stopped and started again on the same data directory."""
    data_dir = tmp_path / "badger"
    service = f"badger-{time.monotonic_ns() % 10**8}"
    with running_jaeger(tmp_path, storage="badger", data_dir=data_dir) as first:
        ids = await one_request(first, service, aiohttp_client, monkeypatch)
        await wait_until_found(first, service, ids["request_id"], capsys)
    assert any(data_dir.rglob("*.vlog")), "Badger wrote no value log"

    with running_jaeger(tmp_path, storage="badger", data_dir=data_dir) as second:
        assert second.query_url != first.query_url  # a new process, on new ports
        by_request_id = await lookup(second, service, ids["request_id"], capsys)
        by_trace_id = await lookup(second, service, ids["trace_id"], capsys)

    for code, out in (by_request_id, by_trace_id):
        assert code == EXIT_FOUND, out
        assert_shows_the_request(out, ids, service)


async def test_memory_storage_forgets_on_restart(
    tmp_path: Path,
    aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The control: the same config on its memory storage finds nothing after a restart."""
    service = f"memory-{time.monotonic_ns() % 10**8}"
    with running_jaeger(tmp_path, storage="memory") as first:
        ids = await one_request(first, service, aiohttp_client, monkeypatch)
        out = await wait_until_found(first, service, ids["request_id"], capsys)
        assert_shows_the_request(out, ids, service)

    with running_jaeger(tmp_path, storage="memory") as second:
        by_request_id = await lookup(second, service, ids["request_id"], capsys)
        by_trace_id = await lookup(second, service, ids["trace_id"], capsys)

    assert by_request_id[0] == EXIT_NOT_FOUND
    assert by_trace_id[0] == EXIT_NOT_FOUND
