"""The Phoenix store, against a real Phoenix fed by the SDK's OTLP/HTTP exporter."""

from __future__ import annotations

import gzip
import json
import re
import secrets
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_reqid_logging.lookup._cli import EXIT_FOUND, EXIT_NOT_FOUND, run
from tests.tools import PhoenixServer

_INGEST_TIMEOUT_S = 60.0
# The lookup's page size, and the largest `limit` Phoenix takes.
_PAGE_SIZE = 1000


def send_request_trace(phoenix: PhoenixServer, project: str, request_id: str) -> str:
    """Export one request's spans to Phoenix project `project`; return the trace id once
    Phoenix serves all of them."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "shop", "openinference.project.name": project})
    )
    exporter = OTLPSpanExporter(endpoint=f"{phoenix.otlp_http_endpoint}/v1/traces", timeout=10)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /users/{id}", kind=SpanKind.SERVER) as server:
        server.set_attribute("request.id", request_id)
        server.set_attribute("http.route", "/users/{id}")
        with tracer.start_as_current_span("load user") as child:
            child.set_status(Status(StatusCode.ERROR, "cache miss"))
        trace_id = f"{server.get_span_context().trace_id:032x}"
    provider.shutdown()
    _wait_for_spans(phoenix, project, trace_id, count=2)
    return trace_id


@dataclass(frozen=True)
class _Page:
    """One answer of Phoenix's span listing."""

    #: Bytes on the wire, gzip-compressed as Phoenix sends them to the lookup's client.
    wire_size: int
    body: dict[str, Any]


def _wait_for_spans(phoenix: PhoenixServer, project: str, trace_id: str, count: int) -> list[_Page]:
    """Phoenix's answers, page by page, once they hold `count` spans of `trace_id`."""
    # Phoenix ingests in the background: poll its REST API, boundedly.
    deadline = time.monotonic() + _INGEST_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            pages = _trace_pages(phoenix, project, trace_id)
        except OSError:
            pages = []
        if sum(len(page.body["data"]) for page in pages) >= count:
            return pages
        time.sleep(0.2)
    pytest.fail(f"Phoenix did not serve {count} spans of {trace_id} within {_INGEST_TIMEOUT_S} s")


def _trace_pages(phoenix: PhoenixServer, project: str, trace_id: str) -> list[_Page]:
    """Every page of the spans of `trace_id`, asked for as the lookup asks: 1,000 a page,
    gzip accepted (aiohttp's default)."""
    url = f"{phoenix.url}/v1/projects/{project}/spans"
    pages: list[_Page] = []
    cursor: str | None = None
    while True:
        query = [("trace_id", trace_id), ("limit", str(_PAGE_SIZE))]
        if cursor:
            query.append(("cursor", cursor))
        request = urllib.request.Request(  # noqa: S310
            f"{url}?{urllib.parse.urlencode(query)}", headers={"Accept-Encoding": "gzip"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            wire = response.read()
            gzipped = response.headers.get("Content-Encoding") == "gzip"
        pages.append(_Page(len(wire), json.loads(gzip.decompress(wire) if gzipped else wire)))
        cursor = pages[-1].body.get("next_cursor")
        if not cursor:
            return pages


def send_large_trace(
    phoenix: PhoenixServer, project: str, request_id: str, *, children: int
) -> tuple[str, list[_Page]]:
    """Export one request of `children` + 1 spans, each with a long attribute; return the
    trace id and Phoenix's pages of it once it serves them all."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "shop", "openinference.project.name": project})
    )
    exporter = OTLPSpanExporter(endpoint=f"{phoenix.otlp_http_endpoint}/v1/traces", timeout=30)
    # Batches of 500, not one request per span: keeps the export to a few seconds.
    processor = BatchSpanProcessor(exporter, max_queue_size=children + 1, max_export_batch_size=500)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /report", kind=SpanKind.SERVER) as server:
        server.set_attribute("request.id", request_id)
        server.set_attribute("http.route", "/report")
        for index in range(children):
            with tracer.start_as_current_span(f"SELECT report rows {index:05d}") as child:
                # Random, so that gzip cannot shrink the answer below what one read returns.
                child.set_attribute("report.note", secrets.token_urlsafe(300))
        trace_id = f"{server.get_span_context().trace_id:032x}"
    provider.shutdown()
    return trace_id, _wait_for_spans(phoenix, project, trace_id, count=children + 1)


def lookup(phoenix: PhoenixServer, project: str, *argv: str) -> int:
    base = ["--backend", "phoenix", "--phoenix-url", phoenix.url, "--phoenix-project", project]
    return run([*base, *argv])


def test_found_by_request_id(
    phoenix_server: PhoenixServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The request id finds the server span, and the whole trace (its child too) is printed."""
    project = f"lookup-{secrets.token_hex(4)}"
    trace_id = send_request_trace(phoenix_server, project, "k3v9q2xd")
    send_request_trace(phoenix_server, project, "aaaa0001")

    code = lookup(phoenix_server, project, "k3v9q2xd")

    out = capsys.readouterr().out
    assert code == EXIT_FOUND
    assert out.startswith(f"trace {trace_id}  (2 spans)\n")
    assert "request.id=k3v9q2xd http.route=/users/{id}" in out
    assert "└─ load user  " in out
    assert "ERROR: cache miss" in out
    assert "aaaa0001" not in out
    assert "Jaeger UI" not in out  # Phoenix is no Jaeger


def test_number_like_request_id_stays_a_string(
    phoenix_server: PhoenixServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """An adopted id made of digits matches the string attribute (Phoenix would read an
    unquoted `12345` as a number and find nothing)."""
    project = f"lookup-{secrets.token_hex(4)}"
    request_id = str(10**9 + secrets.randbelow(10**9))
    trace_id = send_request_trace(phoenix_server, project, request_id)

    code = lookup(phoenix_server, project, request_id)

    assert code == EXIT_FOUND
    assert f"trace {trace_id}" in capsys.readouterr().out


def test_found_by_trace_id(
    phoenix_server: PhoenixServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trace id fetches all spans of that trace."""
    project = f"lookup-{secrets.token_hex(4)}"
    trace_id = send_request_trace(phoenix_server, project, "k3v9q2xd")

    code = lookup(phoenix_server, project, trace_id)

    assert code == EXIT_FOUND
    assert f"trace {trace_id}  (2 spans)" in capsys.readouterr().out


def test_not_found_and_unknown_project(
    phoenix_server: PhoenixServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """An id Phoenix does not hold, and a project it does not know, both exit 1 with
    reasons that point at --phoenix-project."""
    project = f"lookup-{secrets.token_hex(4)}"
    send_request_trace(phoenix_server, project, "k3v9q2xd")

    assert lookup(phoenix_server, project, "zzzz9999") == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert f"no span with request id zzzz9999 in Phoenix project {project!r}" in err
    assert "--phoenix-project" in err

    unknown = urllib.parse.quote(f"nothing-{secrets.token_hex(4)}")
    assert lookup(phoenix_server, unknown, "k3v9q2xd") == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert f"has no project {unknown!r}" in err
    assert "--phoenix-project" in err


def test_trace_of_more_than_one_page_is_read_whole(
    phoenix_server: PhoenixServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trace of 1,500 spans comes in two pages, the first a 1,000-span answer of several
    hundred KiB: the lookup reads both whole, by request id and by trace id."""
    project = f"lookup-{secrets.token_hex(4)}"
    children = 1499
    trace_id, pages = send_large_trace(phoenix_server, project, "big4page", children=children)
    # More than one page, the first well above the ~128 KiB that one read of the body
    # returned, even compressed.
    assert [len(page.body["data"]) for page in pages] == [_PAGE_SIZE, children + 1 - _PAGE_SIZE]
    assert pages[0].wire_size > 256 * 1024

    by_request = lookup(phoenix_server, project, "big4page")
    first, first_err = capsys.readouterr()
    by_trace = lookup(phoenix_server, project, trace_id)
    second, second_err = capsys.readouterr()

    assert (by_request, by_trace) == (EXIT_FOUND, EXIT_FOUND), first_err + second_err
    for out in (first, second):
        assert out.startswith(f"trace {trace_id}  ({children + 1} spans)\n")
        assert "request.id=big4page http.route=/report" in out
        # Every child once, in the tree under the server span.
        rows = re.findall(r"\n[├└]─ SELECT report rows (\d{5})  ", out)
        assert sorted(rows) == [f"{index:05d}" for index in range(children)]
