"""`opentelemetry-instrument` on an unmodified app: ids in its log lines, spans in a file."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from aiohttp import ClientSession

from tests.subprocess_app import BIN, run_app_process

LINE = re.compile(r"\[req:(\S+) trace:(\S+)\] (.*)$")
# What the README tells users to set; OTEL_METRICS_EXPORTER and OTEL_LOGS_EXPORTER must be
# "none" when only traces are exported, or the distro's defaults fail the whole setup.
README_ENV = {
    "OTEL_SERVICE_NAME": "shop",
    "OTEL_TRACES_EXPORTER": "otel_reqid_file",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}
COMMAND = [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "examples/plain_app.py"]


def server_spans(path: Path) -> list[dict[str, Any]]:
    spans = []
    for line in path.read_text().splitlines():
        for resource_spans in json.loads(line)["resourceSpans"]:
            for scope_spans in resource_spans["scopeSpans"]:
                for span in scope_spans["spans"]:
                    span["scope"] = scope_spans["scope"]["name"]
                    span["attrs"] = {a["key"]: a["value"] for a in span.get("attributes", [])}
                    spans.append(span)
    return [s for s in spans if s["kind"] in (2, "SPAN_KIND_SERVER")]


async def drive(url: str) -> dict[str, str | None]:
    """Three concurrent checkouts and one crash; return request ids by path."""
    async with ClientSession() as session:

        async def call(method: str, path: str) -> tuple[str, str | None]:
            async with session.request(method, url + path) as response:
                await response.read()
                return path, response.headers.get("X-Request-ID")

        calls = [call("POST", f"/checkout/{n}") for n in range(3)] + [call("GET", "/crash")]
        return dict(await asyncio.gather(*calls))


def run(tmp_path: Path, **extra_env: str) -> tuple[dict[str, str | None], list[str], Path]:
    spans_file = tmp_path / "spans.jsonl"
    env = {**README_ENV, "OTEL_REQID_SPANS_FILE": str(spans_file), **extra_env}
    with run_app_process(COMMAND, env) as app:
        ids = asyncio.run(drive(app.url))
    return ids, app.output, spans_file


def test_log_lines_and_spans_carry_the_same_ids(tmp_path: Path) -> None:
    """Handler, error and access lines carry the response's id; spans have it too."""
    ids, output, spans_file = run(tmp_path)
    assert all(ids.values()), ids
    lines = [LINE.search(line) for line in output]
    by_id: dict[str, list[str]] = {}
    traces: dict[str, set[str]] = {}
    for match in filter(None, lines):
        by_id.setdefault(match[1], []).append(match[3])
        traces.setdefault(match[1], set()).add(match[2])
    for n in range(3):
        messages = by_id[ids[f"/checkout/{n}"] or ""]
        assert f"checking out cart {n}" in messages
        assert f"cart {n} paid" in messages
        assert any(f'"POST /checkout/{n} HTTP/1.1" 200' in m for m in messages)
    crash_lines = by_id[ids["/crash"] or ""]
    assert "Error handling request from 127.0.0.1" in crash_lines
    assert any('"GET /crash HTTP/1.1" 500' in m for m in crash_lines)
    assert "RuntimeError: payment service unreachable" in output

    spans = server_spans(spans_file)
    assert len(spans) == 4
    for span in spans:
        request_id = span["attrs"]["request.id"]["stringValue"]
        assert traces[request_id] == {span["traceId"]}
        # With the aiohttp-server instrumentation installed too, its span is the one.
        assert span["scope"] == "opentelemetry.instrumentation.aiohttp_server"
    assert {s["attrs"]["request.id"]["stringValue"] for s in spans} == set(ids.values())


def test_own_span_when_aiohttp_server_instrumentation_is_disabled(tmp_path: Path) -> None:
    """Without OpenTelemetry's aiohttp-server instrumentation, ours starts the span."""
    ids, _, spans_file = run(tmp_path, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="aiohttp-server")
    spans = server_spans(spans_file)
    assert {s["scope"] for s in spans} == {"otel_reqid_logging"}
    assert {s["attrs"]["request.id"]["stringValue"] for s in spans} == set(ids.values())
    assert {s["name"] for s in spans} == {"POST /checkout/{cart}", "GET /crash"}


def test_disabled_by_environment(tmp_path: Path) -> None:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=aiohttp-reqid turns the library off."""
    ids, output, spans_file = run(tmp_path, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="aiohttp-reqid")
    assert set(ids.values()) == {None}
    spans = server_spans(spans_file)
    assert len(spans) == 4
    assert all("request.id" not in s["attrs"] for s in spans)
    # The app's format names request_id, which nothing provides now.
    assert any("Formatting field not found in record: 'request_id'" in line for line in output)
