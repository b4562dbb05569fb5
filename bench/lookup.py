"""Benchmark: what a lookup costs in a busy Jaeger, in bytes transferred and wall time.

The real Jaeger (built by ``tests.tools``, memory storage) is filled with ``--traces``
traces of ``--spans`` spans each over several services, sent as OTLP protobuf over HTTP
straight to its receiver in batches. Every trace is a request to one service that calls
another: both SERVER spans carry a request id, as this library writes them. Then one
trace well behind the newest is looked up, the way the CLI does (``lookup._cli.run``,
output captured), through a loopback proxy that counts every byte Jaeger sends and
receives: by request id with ``--service``, by request id searching every service, by
trace id, and by a pasted log line. Each is repeated ``--repeats`` times; medians are
reported beside the size of the matching trace, and beside what the previous lookup's
first request (an api_v3 search, whose ``query.attributes`` Jaeger 2.12 ignores) moved.

    .venv/bin/python -m bench.lookup [--traces 1000] [--spans 200] [--output bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp

__all__ = [
    "DEFAULT_OUTPUT",
    "LookupCase",
    "LookupResults",
    "build_requests",
    "main",
    "measure",
    "render",
    "update_section",
]

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS.md"
SECTION_TITLE = "## Trace lookup in a busy Jaeger"
SERVICES = ("shop", "payment", "search", "mail", "auth")
# Traces per OTLP request: about 4,000 spans, well under the receiver's size limits.
_BATCH_TRACES = 20
_STORE_WAIT_S = 120.0


@dataclass
class LookupCase:
    """One way of looking the trace up, and what each repeat of it cost."""

    name: str
    argv: list[str]
    wire_bytes: list[int] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def median_bytes(self) -> float:
        """Median bytes over the wire, both directions, headers included."""
        return statistics.median(self.wire_bytes)

    @property
    def median_ms(self) -> float:
        """Median wall time of the whole lookup, output included, in milliseconds."""
        return statistics.median(self.seconds) * 1000


@dataclass
class LookupResults:
    """The store, the trace looked up, and the cases measured."""

    traces: int
    spans_per_trace: int
    services: int
    store_bytes: int
    trace_v3_bytes: int
    trace_v1_bytes: int
    previous_first_request_bytes: int
    repeats: int
    cases: list[LookupCase]
    versions: str


class _CountingProxy:
    """A TCP proxy on loopback in front of Jaeger's query port that counts bytes.

    It runs its own event loop in a thread, so the CLI (which runs its own) can be timed
    in the calling thread as a user would run it.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self.bytes = 0
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _CountingProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the counting proxy did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def take(self) -> tuple[int, int]:
        """Bytes and HTTP requests since the last call."""
        counted = (self.bytes, self.requests)
        self.bytes = self.requests = 0
        return counted

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, asking: bool
        ) -> None:
            try:
                while chunk := await source.read(65536):
                    self.bytes += len(chunk)
                    if asking:
                        # One request line per request; a URL cannot hold a raw CRLF.
                        self.requests += chunk.count(b" HTTP/1.1\r\n")
                    sink.write(chunk)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()
                with contextlib.suppress(ConnectionError):
                    await sink.wait_closed()

        await asyncio.gather(
            pipe(reader, up_writer, asking=True), pipe(up_reader, writer, asking=False)
        )


def _span_ids(rng: random.Random) -> Iterator[bytes]:
    while True:
        yield rng.getrandbits(64).to_bytes(8, "big")


def build_requests(
    *, traces: int, spans: int, services: Sequence[str], seed: int = 1
) -> tuple[list[bytes], list[dict[str, str]]]:
    """OTLP protobuf export requests holding the traces, and each trace's ids.

    A trace: the SERVER span of a request to one service (with its request id), three
    quarters of the spans as its children (database calls with a statement), then the
    SERVER span of the service it called (with that service's request id) and the rest
    as that span's children. Traces start over the last half hour, oldest first.
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: PLC0415
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: PLC0415
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource  # noqa: PLC0415
    from opentelemetry.proto.trace.v1 import trace_pb2  # noqa: PLC0415

    from otel_reqid_logging._ids import request_id_from_span_id  # noqa: PLC0415

    rng = random.Random(seed)  # noqa: S311 (made-up ids, no secret)
    ids = _span_ids(rng)
    now = time.time_ns()
    step = 30 * 60 * 10**9 // max(traces, 1)

    def attribute(key: str, value: str | int) -> KeyValue:
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    def server(
        trace_id: bytes, span_id: bytes, parent: bytes, start: int, route: str
    ) -> trace_pb2.Span:
        request_id = request_id_from_span_id(int.from_bytes(span_id, "big"))
        return trace_pb2.Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=f"GET {route}",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=start,
            end_time_unix_nano=start + 80_000_000,
            attributes=[
                attribute("request.id", request_id),
                attribute("http.request.method", "GET"),
                attribute("http.route", route),
                attribute("url.path", route.replace("{id}", str(rng.randrange(10**6)))),
                attribute("http.response.status_code", 200),
            ],
        )

    def child(trace_id: bytes, parent: bytes, start: int, number: int) -> trace_pb2.Span:
        return trace_pb2.Span(
            trace_id=trace_id,
            span_id=next(ids),
            parent_span_id=parent,
            name="SELECT items",
            kind=trace_pb2.Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=start + number * 300_000,
            end_time_unix_nano=start + number * 300_000 + 250_000,
            attributes=[
                attribute("db.system.name", "postgresql"),
                attribute(
                    "db.query.text",
                    # A statement's text as an instrumentation records it; never run.
                    f"SELECT id, name, price, stock FROM items WHERE cart_id = {number} "  # noqa: S608
                    "AND deleted_at IS NULL ORDER BY position",
                ),
                attribute("db.response.returned_rows", number % 17),
            ],
        )

    requests: list[bytes] = []
    index: list[dict[str, str]] = []
    batch: dict[str, list[trace_pb2.Span]] = {}
    for number in range(traces):
        trace_id = rng.getrandbits(128).to_bytes(16, "big")
        start = now - (traces - number) * step
        first = services[number % len(services)]
        second = services[(number + 1) % len(services)]
        root_id, called_id = next(ids), next(ids)
        own = max(spans * 3 // 4 - 1, 0)
        first_spans = [server(trace_id, root_id, b"", start, "/orders/{id}")]
        first_spans += [child(trace_id, root_id, start, n) for n in range(own)]
        second_spans = [server(trace_id, called_id, root_id, start + 1_000_000, "/charges")]
        second_spans += [
            child(trace_id, called_id, start + 1_000_000, n) for n in range(spans - own - 2)
        ]
        batch.setdefault(first, []).extend(first_spans)
        batch.setdefault(second, []).extend(second_spans)
        index.append(
            {
                "trace_id": trace_id.hex(),
                "request_id": request_id_from_span_id(int.from_bytes(root_id, "big")),
                "service": first,
            }
        )
        if len(index) % _BATCH_TRACES == 0 or number == traces - 1:
            request = ExportTraceServiceRequest(
                resource_spans=[
                    trace_pb2.ResourceSpans(
                        resource=Resource(attributes=[attribute("service.name", name)]),
                        scope_spans=[trace_pb2.ScopeSpans(spans=members)],
                    )
                    for name, members in batch.items()
                ]
            )
            requests.append(request.SerializeToString())
            batch = {}
    return requests, index


async def _fill(otlp_http: str, query_url: str, requests: list[bytes], last: str) -> None:
    """Send the export requests, then wait until Jaeger serves the last trace."""
    async with aiohttp.ClientSession() as session:
        for body in requests:
            async with session.post(
                f"{otlp_http}/v1/traces",
                data=body,
                headers={"Content-Type": "application/x-protobuf"},
            ) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"Jaeger's OTLP receiver answered HTTP {answer.status}")
        deadline = time.monotonic() + _STORE_WAIT_S
        while True:
            async with session.get(f"{query_url}/api/v3/traces/{last}") as answer:
                if answer.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("Jaeger did not store the traces in time")
            await asyncio.sleep(0.2)


async def _sizes(query_url: str, target: dict[str, str]) -> tuple[int, int, int]:
    """Body bytes of the trace from api_v3 and from the UI API, and of the api_v3 search
    the previous lookup made first (20 newest traces of the service, whole)."""
    end = datetime.now(timezone.utc) + timedelta(minutes=5)
    start = end - timedelta(hours=24, minutes=5)
    search = {
        "query.service_name": target["service"],
        "query.attributes": json.dumps({"request.id": target["request_id"]}),
        "query.start_time_min": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "query.start_time_max": end.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "query.num_traces": "20",
    }
    async with aiohttp.ClientSession() as session:
        sizes = []
        for path, params in (
            (f"/api/v3/traces/{target['trace_id']}", None),
            (f"/api/traces/{target['trace_id']}", None),
            ("/api/v3/traces", search),
        ):
            async with session.get(query_url + path, params=params) as answer:
                sizes.append(len(await answer.read()))
    return sizes[0], sizes[1], sizes[2]


def _cases(url: str, target: dict[str, str]) -> list[LookupCase]:
    line = (
        "2026-12-05 08:01:26,456 ERROR shop [req:{request_id} trace:{trace_id}] "
        "payment of order 1001 failed"
    ).format(**target)
    common = ["--jaeger-url", url]
    return [
        LookupCase(
            "request id, `--service`",
            [*common, "--service", target["service"], target["request_id"]],
        ),
        LookupCase("request id, every service", [*common, target["request_id"]]),
        LookupCase("trace id", [*common, target["trace_id"]]),
        LookupCase("pasted log line", [*common, line]),
    ]


def _lookup_once(argv: list[str]) -> tuple[int, float]:
    from otel_reqid_logging.lookup._cli import run  # noqa: PLC0415

    sink = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        code = run(argv)
    elapsed = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"lookup {' '.join(argv)} exited {code}:\n{sink.getvalue()[-2000:]}")
    return code, elapsed


def measure(
    *,
    query_url: str,
    otlp_http_endpoint: str,
    traces: int = 1000,
    spans: int = 200,
    repeats: int = 7,
    services: Sequence[str] = SERVICES,
    seed: int = 1,
) -> LookupResults:
    """Fill the Jaeger at ``query_url`` and measure the lookups of one of its traces."""
    requests, index = build_requests(traces=traces, spans=spans, services=services, seed=seed)
    print(f"sending {traces} traces of {spans} spans ...", file=sys.stderr, flush=True)
    asyncio.run(_fill(otlp_http_endpoint, query_url, requests, index[-1]["trace_id"]))
    # Far behind the newest: a search that ignores the request id returns other traces.
    target = index[len(index) // 10]
    trace_v3, trace_v1, previous = asyncio.run(_sizes(query_url, target))
    host, _, port = query_url.removeprefix("http://").partition(":")
    with _CountingProxy(host, int(port)) as proxy:
        cases = _cases(f"http://127.0.0.1:{proxy.port}", target)
        for repeat in range(repeats + 1):
            for case in cases:
                _, elapsed = _lookup_once(case.argv)
                wire, requests_made = proxy.take()
                if repeat == 0:
                    continue  # a warm-up: imports, Jaeger's first search
                case.wire_bytes.append(wire)
                case.requests.append(requests_made)
                case.seconds.append(elapsed)
    return LookupResults(
        traces=traces,
        spans_per_trace=spans,
        services=len(services),
        store_bytes=sum(map(len, requests)),
        trace_v3_bytes=trace_v3,
        trace_v1_bytes=trace_v1,
        previous_first_request_bytes=previous,
        repeats=repeats,
        cases=cases,
        versions=_versions(),
    )


def _versions() -> str:
    import aiohttp as client  # noqa: PLC0415

    return (
        f"Python {platform.python_version()}, aiohttp {client.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores"
    )


def render(results: LookupResults) -> str:
    """The markdown section for bench/RESULTS.md and docs/performance.md."""
    kb = 1024
    trace = results.trace_v3_bytes
    lines = [
        SECTION_TITLE,
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {results.versions}; "
        "Jaeger 2.12.0 (memory storage) on loopback",
        f"- Store: {results.traces:,} traces of {results.spans_per_trace} spans over "
        f"{results.services} services (each trace a request to one service calling "
        f"another; {results.store_bytes / kb / kb:.1f} MiB of OTLP protobuf sent)",
        f"- Looked up: a trace behind the newest {results.traces - results.traces // 10 - 1:,}; "
        f"its api_v3 answer (OTLP JSON) is {trace / kb:.1f} KiB, its `/api/traces/{{id}}` "
        f"answer (UI model) {results.trace_v1_bytes / kb:.1f} KiB",
        f"- Each lookup run as the CLI runs it (`lookup._cli.run`, output captured), "
        f"{results.repeats} times after a warm-up; bytes counted by a TCP proxy in front of "
        "Jaeger, both directions, headers included; medians",
        "",
        "| lookup | bytes over the wire | x the trace's api_v3 answer | HTTP requests "
        "| wall time |",
        "|---|--:|--:|--:|--:|",
    ]
    for case in results.cases:
        lines.append(
            f"| {case.name} | {case.median_bytes / kb:,.1f} KiB | "
            f"{case.median_bytes / trace:.2f} | {statistics.median(case.requests):.0f} | "
            f"{case.median_ms:.0f} ms |"
        )
    lines += [
        f"| before: the previous lookup's first request alone (api_v3 search, "
        f"`query.attributes` ignored) | {results.previous_first_request_bytes / kb:,.1f} KiB | "
        f"{results.previous_first_request_bytes / trace:.2f} | 1 | |",
        "",
    ]
    return "\n".join(lines)


def update_section(path: Path, section: str) -> None:
    """Put ``section`` into the markdown file in place of its previous version, or last."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start = text.find(SECTION_TITLE)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        following = text.find("\n## ", start + len(SECTION_TITLE))
        rest = text[following + 1 :] if following != -1 else ""
        text = text[:start] + section + ("\n" + rest if rest else "")
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Start Jaeger, fill it, measure, and write the section into ``--output``."""
    parser = argparse.ArgumentParser(prog="python -m bench.lookup", description=__doc__)
    parser.add_argument("--traces", type=int, default=1000, help="traces in the store")
    parser.add_argument("--spans", type=int, default=200, help="spans per trace")
    parser.add_argument("--repeats", type=int, default=7, help="measured runs of each lookup")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown report")
    args = parser.parse_args(argv)
    if min(args.traces, args.repeats) < 1 or args.spans < 2:
        parser.error("--traces and --repeats must be at least 1, --spans at least 2")
    # The same Jaeger the tests run, built once into the tools cache.
    from tests.tools import running_jaeger  # noqa: PLC0415

    with (
        tempfile.TemporaryDirectory(prefix="bench-jaeger-") as folder,
        running_jaeger(Path(folder)) as jaeger,
    ):
        results = measure(
            query_url=jaeger.query_url,
            otlp_http_endpoint=jaeger.otlp_http_endpoint,
            traces=args.traces,
            spans=args.spans,
            repeats=args.repeats,
        )
    section = render(results)
    update_section(args.output, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
