"""`lookup ID --logs PATH`: the request's own log lines, from real log files, beside its trace."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import re
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from opentelemetry.exporter.otlp.json.file import FileSpanExporter
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from pytest_aiohttp import AiohttpServer
from pythonjsonlogger.json import JsonFormatter
from yarl import URL

from otel_reqid_logging import (
    LOG_FORMAT,
    RequestIdAccessLogger,
    RequestIdMiddleware,
    current_request_id,
    install_record_factory,
)
from otel_reqid_logging.lookup._cli import EXIT_FOUND, EXIT_NOT_FOUND, EXIT_USAGE, run
from otel_reqid_logging.lookup._logs import MAX_LINE_BYTES, find_log_lines, log_files
from otel_reqid_logging.lookup._query import Query
from otel_reqid_logging.lookup.file import FileBackend
from tests.test_lookup_file import write_request

shop_log = logging.getLogger("svc.shop")
stock_log = logging.getLogger("svc.stock")


def file_logger(name: str, path: Path, formatter: logging.Formatter) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(formatter)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


@pytest.fixture
def two_services_logs(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """Log files of two services: shop writes text lines, stock JSON lines (python-json-logger)."""
    install_record_factory()
    (tmp_path / "logs").mkdir()
    text = tmp_path / "logs" / "shop.log"
    json_lines = tmp_path / "logs" / "stock.jsonl"
    json_format = JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s "
        "%(request_id)s %(trace_id)s %(span_id)s %(otelServiceName)s"
    )
    handlers = {
        "svc.shop": file_logger("svc.shop", text, logging.Formatter(LOG_FORMAT)),
        "svc.shop.access": file_logger("svc.shop.access", text, logging.Formatter(LOG_FORMAT)),
        "svc.stock": file_logger("svc.stock", json_lines, json_format),
        "svc.stock.access": file_logger("svc.stock.access", json_lines, json_format),
    }
    yield text, json_lines, tmp_path / "spans.jsonl"
    for name, handler in handlers.items():
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
        handler.close()


def provider_for(service: str, spans: Path) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(spans)))
    return provider


async def test_lines_of_both_services_in_time_order(
    aiohttp_server: AiohttpServer,
    two_services_logs: tuple[Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A's request id gives the trace, then A's text lines and B's JSON lines, each marked."""
    text, json_lines, spans = two_services_logs
    shop_provider, stock_provider = provider_for("shop", spans), provider_for("stock", spans)

    async def reserve(request: web.Request) -> web.Response:
        stock_log.info("reserving %s", request.query.get("item"))
        try:
            raise LookupError("no stock in aisle 7")
        except LookupError:
            stock_log.exception("reservation failed")
        await asyncio.sleep(0.02)
        return web.Response(text=current_request_id() or "-")

    stock_app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=stock_provider)])
    stock_app.router.add_get("/reserve", reserve)
    stock = await aiohttp_server(
        stock_app,
        access_log_class=RequestIdAccessLogger,
        access_log=logging.getLogger("svc.stock.access"),
    )

    async def checkout(request: web.Request) -> web.Response:
        shop_log.info("checkout started")
        await asyncio.sleep(0.02)
        headers: dict[str, str] = {}
        inject(headers)
        async with (
            ClientSession() as session,
            session.get(stock.make_url("/reserve?item=7"), headers=headers) as response,
        ):
            stock_id = await response.text()
        await asyncio.sleep(0.02)
        shop_log.warning("checkout done, stock request %s", stock_id)
        return web.Response(text=stock_id)

    shop_app = web.Application(middlewares=[RequestIdMiddleware(tracer_provider=shop_provider)])
    shop_app.router.add_get("/checkout", checkout)
    shop = await aiohttp_server(
        shop_app,
        access_log_class=RequestIdAccessLogger,
        access_log=logging.getLogger("svc.shop.access"),
    )
    async with ClientSession() as session:
        other = await session.get(shop.make_url("/checkout"))
        other_ids = (other.headers["X-Request-ID"], await other.text())
        response = await session.get(shop.make_url("/checkout"))
        shop_id, stock_id = response.headers["X-Request-ID"], await response.text()
    shop_provider.shutdown()
    stock_provider.shutdown()
    await asyncio.sleep(0.05)  # the access lines are written after the response is sent

    json_glob = str(json_lines.parent / "*.jsonl")
    # In a thread: the command runs its own event loop, as it does from a shell.
    argv = ["--file", str(spans), shop_id, "--logs", str(text), "--logs", json_glob]
    # Wide enough that no line is wrapped.
    code = await asyncio.to_thread(run, [*argv, "--width", "1000"])

    out = capsys.readouterr().out
    assert code == EXIT_FOUND
    assert re.match(r"trace [0-9a-f]{32}  \(2 spans, service shop, stock\)", out)
    assert "\nlog lines (6 in 2 files, each under the span it was written in)\n" in out
    rows = out.splitlines()
    # JSON lines are shown as time, level, logger and message; a traceback below its line.
    failed = next(i for i, row in enumerate(rows) if "ERROR svc.stock reservation failed" in row)
    assert rows[failed + 1].strip() == "Traceback (most recent call last):"
    assert "LookupError: no stock in aisle 7" in [
        row.strip() for row in rows[failed + 2 : failed + 6]
    ]
    # Each line under the span it was written in, in the order they were written: shop's
    # first line before the call to stock, stock's under stock's span, shop's last after it.
    stock_row = next(i for i, row in enumerate(rows) if row.startswith("└─ GET /reserve  "))
    expected = [
        ("checkout started", "shop"),
        ("reserving 7", "stock"),
        ("GET /reserve?item=7 HTTP/1.1", "stock"),
        (f"checkout done, stock request {stock_id}", "shop"),
        ("GET /checkout HTTP/1.1", "shop"),
    ]
    positions = [next(i for i, row in enumerate(rows) if words in row) for words, _ in expected]
    assert positions == sorted(positions)
    assert positions[0] < stock_row < positions[1]
    # Under the child span, a line is drawn further in than the root's lines.
    depth = {
        service: {
            len(rows[i]) - len(rows[i].lstrip(" │"))
            for i, (_, s) in zip(positions, expected, strict=True)
            if s == service
        }
        for service in ("shop", "stock")
    }
    assert min(depth["stock"]) > max(depth["shop"])
    for request_id in other_ids:
        assert request_id not in out


def write(path: Path, *lines: str | bytes) -> Path:
    with path.open("ab") as file:
        for line in lines:
            file.write((line.encode() if isinstance(line, str) else line) + b"\n")
    return path


def test_glob_that_matches_nothing_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --logs pattern without a file stops before the lookup, naming the pattern."""
    spans = tmp_path / "spans.jsonl"
    write_request(spans, "k3v9q2xd")
    write(tmp_path / "app.log", "2026-01-01 00:00:00,000 INFO x [req:k3v9q2xd trace:-] hi")
    missing = str(tmp_path / "logs" / "*.log")

    code = run(
        ["--file", str(spans), "k3v9q2xd", "--logs", str(tmp_path / "app.log"), "--logs", missing]
    )

    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert f"--logs {missing!r} matches no file" in captured.err
    assert captured.out == ""
    with pytest.raises(ValueError, match="matches no regular file"):
        log_files([str(tmp_path)])


def test_a_device_or_pipe_is_no_log_file(tmp_path: Path) -> None:
    """A named pipe or a device (which could be read forever) is refused like a directory,
    and the message does not call it a directory."""
    pipe = tmp_path / "fifo"
    os.mkfifo(pipe)
    for target in (str(pipe), "/dev/zero"):
        with pytest.raises(ValueError, match=r"matches no regular file \(only directories, dev"):
            log_files([target])


def test_binary_and_garbled_lines_never_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Invalid UTF-8, NUL bytes, terminal escapes and broken JSON print safely."""
    spans = tmp_path / "spans.jsonl"
    trace_id = write_request(spans, "k3v9q2xd")
    log = write(
        tmp_path / "app.log",
        bytes(range(256)),
        b"\xff\xfe garbled [req:k3v9q2xd trace:-] caf\xe9 \x00 \x1b[31mred\x1b[0m",
        b'{"request_id": "k3v9q2xd", "message": "cut',
        b"\x89PNG\r\n\x1a\n\x00\x00 k3v9q2xdx not this one",
        f"2026-01-01 00:00:00,000 INFO x [req:- trace:{trace_id}] by trace id".encode(),
    )

    assert run(["--file", str(spans), "k3v9q2xd", "--logs", str(log)]) == EXIT_FOUND

    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\x00" not in out
    assert "garbled [req:k3v9q2xd trace:-] caf\ufffd \\x00 \\x1b[31mred\\x1b[0m" in out
    assert '"message": "cut' in out
    assert "not this one" not in out
    assert "by trace id" in out
    assert "log lines (3 in 1 file" in out


def test_big_files_are_streamed(tmp_path: Path) -> None:
    """Memory stays bounded: a 23 MB file of other lines, and one 24 MB line without an end."""
    spans = tmp_path / "spans.jsonl"
    write_request(spans, "k3v9q2xd")
    many = tmp_path / "many.log"
    noise = b"2026-01-01 00:00:00,000 INFO app [req:aaaa0001 trace:-] " + b"x" * 60 + b"\n"
    with many.open("wb") as file:
        for _ in range(100):
            file.write(noise * 2000)
        file.write(b"2026-01-01 00:00:01,000 INFO app [req:k3v9q2xd trace:-] the one\n")
    endless = tmp_path / "endless.log"
    with endless.open("wb") as file:
        file.write(b"[req:k3v9q2xd] starts here ")
        for _ in range(24):
            file.write(b"y" * (1024 * 1024))

    tracemalloc.start()
    try:
        lines, left_out = find_log_lines([many, endless], None, Query(request_id="k3v9q2xd"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert many.stat().st_size > 20_000_000
    assert len(lines) == 2
    assert lines[0].text.startswith("[req:k3v9q2xd] starts here yyyy")
    assert lines[1].text.endswith("[req:k3v9q2xd trace:-] the one")
    assert len(lines[0].text) == MAX_LINE_BYTES
    assert left_out == 0
    assert peak < 4 * MAX_LINE_BYTES + 2_000_000


def test_unsampled_request_still_shows_its_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No trace found (not sampled): the lines carrying the asked id are still printed."""
    spans = write(tmp_path / "spans.jsonl", "")
    log = write(
        tmp_path / "app.log",
        "2026-01-01 00:00:00,000 INFO app [req:n0tsampl trace:0af7651916cd43dd8448eb211c80319c] hi",
    )

    code = run(["--file", str(spans), "n0tsampl", "--logs", str(log)])

    captured = capsys.readouterr()
    assert code == EXIT_NOT_FOUND
    assert "Likely reasons" in captured.err
    assert "log lines (1 in 1 file" in captured.out
    assert "[req:n0tsampl" in captured.out


def test_time_order_across_formats_and_files(tmp_path: Path) -> None:
    """Times from asctime, ISO 8601 with Z, epoch JSON fields and access-log %t are merged."""
    query = Query(request_id="k3v9q2xd")
    # asctime is local time: written from the epoch of 2026-01-01T10:00:03Z.
    third = time.strftime("%Y-%m-%d %H:%M:%S,000", time.localtime(1767261603))
    first = write(
        tmp_path / "a.log",
        f"{third} INFO a [req:k3v9q2xd trace:-] third",
        '[req:k3v9q2xd] 127.0.0.1 [01/Jan/2026:10:00:05 +0000] "GET / HTTP/1.1" 200 fifth',
    )
    second = write(
        tmp_path / "b.jsonl",
        '{"timestamp": "2026-01-01T10:00:01.5Z", "request_id": "k3v9q2xd", "message": "first"}',
        '{"created": 1767261602.0, "request_id": "k3v9q2xd", "message": "second"}',
        '{"time": "2026-01-01T10:00:04+00:00", "request_id": "k3v9q2xd", "message": "fourth"}',
    )
    lines, _ = find_log_lines([first, second], None, query)
    words = [line.text.rsplit(" ", 1)[-1].strip('"}') for line in lines]
    assert words == ["first", "second", "third", "fourth", "fifth"]


def test_traceback_and_gzip_and_limit(tmp_path: Path) -> None:
    """A traceback follows its line; .gz files are read; past the limit lines are counted."""
    query = Query(request_id="k3v9q2xd")
    text = write(
        tmp_path / "app.log",
        "2026-01-01 10:00:00,000 ERROR a [req:k3v9q2xd trace:-] Unhandled exception",
        "Traceback (most recent call last):",
        '  File "app.py", line 3, in handler',
        "RuntimeError: boom",
        "2026-01-01 10:00:01,000 INFO a [req:other001 trace:-] not ours",
    )
    rotated = tmp_path / "app.log.1.gz"
    with gzip.open(rotated, "wb") as file:
        for second in range(5):
            file.write(
                f"2026-01-01 09:00:0{second},000 INFO a [req:k3v9q2xd] old {second}\n".encode()
            )

    lines, left_out = find_log_lines(log_files([str(tmp_path / "app.log*")]), None, query)
    assert [line.text.rsplit(" ", 1)[-1] for line in lines] == [
        "0",
        "1",
        "2",
        "3",
        "4",
        "exception",
    ]
    assert lines[-1].continuation == (
        "Traceback (most recent call last):",
        '  File "app.py", line 3, in handler',
        "RuntimeError: boom",
    )
    assert left_out == 0
    limited, left_out = find_log_lines([text, rotated], None, query, limit=2)
    assert len(limited) == 2
    assert left_out == 4


def test_span_file_caught_by_a_glob_is_not_a_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--logs '*.jsonl'` may take in the span file: its OTLP lines are not log lines."""
    spans = tmp_path / "spans.jsonl"
    write_request(spans, "k3v9q2xd")
    write(tmp_path / "app.jsonl", '{"message": "hi", "request_id": "k3v9q2xd", "time": 1.0}')

    assert run(["--file", str(spans), "k3v9q2xd", "--logs", str(tmp_path / "*.jsonl")]) == 0

    out = capsys.readouterr().out
    assert "log lines (1 in 2 files" in out
    assert "resourceSpans" not in out


def test_truncated_gzip_keeps_the_lines_before_the_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .gz file cut short (rotation in progress) gives its lines, then a warning."""
    whole = gzip.compress(
        b"".join(
            f"2026-01-01 10:00:{n:02d},000 INFO a [req:k3v9q2xd] line {n}\n".encode()
            for n in range(60)
        )
        + bytes(range(256)) * 400
    )
    cut = tmp_path / "app.log.gz"
    cut.write_bytes(whole[: len(whole) // 2])

    lines, _ = find_log_lines([cut], None, Query(request_id="k3v9q2xd"))

    assert [line.text.rsplit(" ", 1)[-1] for line in lines] == [str(n) for n in range(60)]
    assert "warning: stopped reading" in capsys.readouterr().err


async def test_a_client_cannot_put_its_lines_under_another_request(
    aiohttp_server: AiohttpServer, two_services_logs: tuple[Path, Path, Path]
) -> None:
    """Over real servers: a client that sends another request's ids in its path and
    User-Agent gets its own lines, never the other's; a line is the request's by the ids
    the library wrote (the text prefix, the JSON fields), not by text anywhere in it."""
    text, json_lines, spans = two_services_logs
    provider = provider_for("shop", spans)
    # shop writes LOG_FORMAT text lines, stock python-json-logger lines.
    for service, log in (("shop", shop_log), ("stock", stock_log)):

        async def handler(request: web.Request, log: logging.Logger = log) -> web.Response:
            log.info("asked for %s", request.path_qs)
            return web.Response(text="ok")

        app = web.Application(
            middlewares=[RequestIdMiddleware(tracer_provider=provider, traceresponse=True)]
        )
        app.router.add_get("/{tail:.*}", handler)
        server = await aiohttp_server(
            app,
            access_log_class=RequestIdAccessLogger,
            access_log=logging.getLogger(f"svc.{service}.access"),
        )
        async with ClientSession() as session:
            victim = await session.get(server.make_url("/orders"))
            victim_id = victim.headers["X-Request-ID"]
            victim_trace = victim.headers["traceresponse"].split("-")[1]
            look_alike = f"[req:{victim_id} trace:{victim_trace}] request_id={victim_id}"
            attacker = await session.get(
                # Sent as it is: the brackets reach the logs unescaped.
                URL(
                    f"{server.make_url('/')}[req:{victim_id}]/request_id={victim_id}", encoded=True
                ),
                headers={"User-Agent": look_alike},
            )
            attacker_id = attacker.headers["X-Request-ID"]
        await asyncio.sleep(0.05)  # the access lines are written after the response is sent

        victims, _ = find_log_lines(
            [text, json_lines], None, Query(request_id=victim_id, trace_id=victim_trace)
        )
        attackers, _ = find_log_lines([text, json_lines], None, Query(request_id=attacker_id))

        # Each request: its handler line and its access line, in its service's file.
        file = "shop.log" if service == "shop" else "stock.jsonl"
        for lines in (victims, attackers):
            assert len(lines) == 2, lines
            assert {Path(line.path).name for line in lines} == {file}
        assert all("/orders" in line.text for line in victims)
        assert all(f"/[req:{victim_id}]" in line.text for line in attackers)
    provider.shutdown()


def test_a_text_line_naming_its_span_is_drawn_under_it(tmp_path: Path) -> None:
    """A text line whose prefix names its span (`[req:ID trace:HEX span:HEX]`, the
    demo's format) is placed on that span, a child span too, not on the request's."""
    spans = tmp_path / "spans.jsonl"
    trace_id = write_request(spans, "k3v9q2xd")
    (trace,) = asyncio.run(FileBackend(path=spans).by_request_id("k3v9q2xd"))
    (server,) = [span for span in trace.spans if span.name == "GET /users/{id}"]
    (child,) = [span for span in trace.spans if span.name == "load user"]
    prefix = f"2026-12-05 08:00:00,00{{}} INFO app [req:k3v9q2xd trace:{trace_id}"
    log = write(
        tmp_path / "app.log",
        prefix.format(1) + f" span:{child.span_id}] reading the cache",
        prefix.format(2) + f" span:{server.span_id}] done",
        prefix.format(3) + "] no span named",
    )
    lines, _ = find_log_lines([log], trace, Query(request_id="k3v9q2xd"))
    assert [line.marker for line in lines] == [
        f"shop: load user ({child.span_id[:8]})",
        f"shop: GET /users/{{id}} ({server.span_id[:8]})",
        f"shop: GET /users/{{id}} ({server.span_id[:8]})",
    ]
