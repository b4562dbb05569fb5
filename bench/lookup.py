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
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp

from .busy_jaeger import SERVICES, build_requests, fill
from .wire import CountingProxy

__all__ = [
    "DEFAULT_OUTPUT",
    "SECTION_TITLE",
    "LookupCase",
    "LookupResults",
    "main",
    "measure",
    "render",
    "update_section",
]

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS.md"
SECTION_TITLE = "## Trace lookup in a busy Jaeger"


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
    asyncio.run(fill(otlp_http_endpoint, query_url, requests, index[-1]["trace_id"]))
    # Far behind the newest: a search that ignores the request id returns other traces.
    target = index[len(index) // 10]
    trace_v3, trace_v1, previous = asyncio.run(_sizes(query_url, target))
    host, _, port = query_url.removeprefix("http://").partition(":")
    with CountingProxy(host, int(port)) as proxy:
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
        running_jaeger(Path(folder), storage="memory") as jaeger,
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
