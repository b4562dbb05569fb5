"""The lookup benchmark runs end to end against the real Jaeger; its report is kept in
place. No speed is asserted: only what must hold whatever the machine."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.busy_jaeger import build_requests
from bench.lookup import SECTION_TITLE, measure, render, update_section
from tests.tools import JaegerServer


def test_requests_hold_the_traces_asked_for() -> None:
    """Every trace has its spans, over the services named, and an index entry whose
    request id is the one its root SERVER span carries."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: PLC0415
        ExportTraceServiceRequest,
    )

    requests, index = build_requests(traces=7, spans=10, services=("a", "b", "c"))

    spans = []
    services = set()
    for body in requests:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            services.add(resource_spans.resource.attributes[0].value.string_value)
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    assert len(spans) == 70
    assert services == {"a", "b", "c"}
    assert len({span.trace_id for span in spans}) == len(index) == 7
    roots = {span.trace_id.hex(): span for span in spans if not span.parent_span_id}
    for entry in index:
        carried = {a.key: a.value.string_value for a in roots[entry["trace_id"]].attributes}
        assert carried["request.id"] == entry["request_id"]


async def test_measures_every_lookup_against_the_real_jaeger(jaeger_server: JaegerServer) -> None:
    """A small run: every lookup finds the trace (a lookup that fails raises), bytes
    and connections are counted for each, and a request-id lookup moves less than the
    api_v3 search the previous lookup began with (the newest traces of the service)."""
    results = await asyncio.to_thread(
        measure,
        query_url=jaeger_server.query_url,
        otlp_http_endpoint=jaeger_server.otlp_http_endpoint,
        traces=60,
        spans=20,
        repeats=1,
        services=("bench-a", "bench-b", "bench-c"),
        seed=21,
    )

    assert [case.name for case in results.cases] == [
        "request id, `--service`",
        "request id, every service",
        "trace id",
        "pasted log line",
    ]
    for case in results.cases:
        assert len(case.wire_bytes) == len(case.seconds) == 1
        assert case.median_bytes > results.trace_v3_bytes
    by_request = results.cases[0].median_bytes
    assert by_request < results.previous_first_request_bytes
    assert results.cases[0].requests == [2]
    section = render(results)
    assert section.startswith(SECTION_TITLE)
    assert section.count("\n| ") == 6


def test_the_section_replaces_its_previous_version(tmp_path: Path) -> None:
    """update_section appends the section once, then replaces it in place, leaving the
    sections before and after it as they were."""
    report = tmp_path / "RESULTS.md"
    report.write_text("# Benchmark results\n\n## Targets\n\nA\n")

    update_section(report, f"{SECTION_TITLE}\n\nfirst\n")
    report.write_text(report.read_text() + "\n## Later\n\nB\n")
    update_section(report, f"{SECTION_TITLE}\n\nsecond\n")

    text = report.read_text()
    assert text.count(SECTION_TITLE) == 1
    assert "second" in text
    assert "first" not in text
    assert text.index("## Targets") < text.index(SECTION_TITLE) < text.index("## Later")
    assert text.endswith("## Later\n\nB\n")
