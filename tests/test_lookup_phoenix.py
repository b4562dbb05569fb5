"""The Phoenix store, against a real Phoenix fed by the SDK's OTLP/HTTP exporter."""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_reqid_logging.lookup._cli import EXIT_FOUND, EXIT_NOT_FOUND, run
from tests.tools import PhoenixServer

_INGEST_TIMEOUT_S = 30.0


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


def _wait_for_spans(phoenix: PhoenixServer, project: str, trace_id: str, count: int) -> None:
    # Phoenix ingests in the background: poll its REST API, boundedly.
    url = f"{phoenix.url}/v1/projects/{project}/spans?trace_id={trace_id}"
    deadline = time.monotonic() + _INGEST_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
                if len(json.load(response)["data"]) >= count:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"Phoenix did not serve {count} spans of {trace_id} within {_INGEST_TIMEOUT_S} s")


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
