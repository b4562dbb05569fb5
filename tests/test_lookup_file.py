"""The local span file store, fed by OpenTelemetry's own OTLP JSON file exporter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.json.file import FileSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_reqid_logging._options import DEFAULT_SPANS_FILE, SPANS_FILE_ENV
from otel_reqid_logging.lookup._cli import (
    EXIT_BACKEND_ERROR,
    EXIT_FOUND,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    run,
)


def write_request(path: Path, request_id: str, *, service: str = "shop") -> str:
    """Export one request's spans (one export line per span) to `path`; return the trace id."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /users/{id}", kind=SpanKind.SERVER) as server:
        server.set_attribute("request.id", request_id)
        server.set_attribute("http.route", "/users/{id}")
        server.set_attribute("http.response.status_code", 200)
        with tracer.start_as_current_span("load user") as child:
            child.set_status(Status(StatusCode.ERROR, "cache miss"))
        trace_id = f"{server.get_span_context().trace_id:032x}"
    provider.shutdown()
    return trace_id


def test_exporter_line_shape(tmp_path: Path) -> None:
    """Pins what the lookup relies on in a line of the official exporter: one JSON object
    per line, hex ids, nanosecond times and 64-bit ints as strings, integer kind."""
    path = tmp_path / "spans.jsonl"
    trace_id = write_request(path, "k3v9q2xd")

    lines = path.read_text().splitlines()
    span = json.loads(lines[1])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(lines) == 2
    assert span["traceId"] == trace_id
    assert len(span["spanId"]) == 16
    assert isinstance(span["startTimeUnixNano"], str)
    assert span["kind"] == 2
    assert {"key": "http.response.status_code", "value": {"intValue": "200"}} in span["attributes"]


def test_found_by_request_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The request id finds the whole trace, the child included although its line comes
    before the server span's, and other requests in the file are left out."""
    path = tmp_path / "spans.jsonl"
    write_request(path, "aaaa0001")
    trace_id = write_request(path, "k3v9q2xd")
    write_request(path, "bbbb0002")

    code = run(["--file", str(path), "k3v9q2xd"])

    out = capsys.readouterr().out
    assert code == EXIT_FOUND
    assert out.startswith(f"trace {trace_id}  (2 spans, service shop)\n")
    assert "GET /users/{id}  " in out
    assert "SERVER  request.id=k3v9q2xd http.route=/users/{id} http.response.status_code=200" in out
    assert "└─ load user  " in out
    assert "ERROR: cache miss" in out
    assert "aaaa0001" not in out
    assert "bbbb0002" not in out
    assert "Jaeger UI" not in out  # the span file is no Jaeger


def test_found_from_a_pasted_log_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log line pasted unquoted (so split into many arguments) is searched by its ids."""
    path = tmp_path / "spans.jsonl"
    trace_id = write_request(path, "k3v9q2xd")
    line = f"2026-11-24 03:37:40,123 INFO app [req:k3v9q2xd trace:{trace_id}] hello"

    code = run(["--file", str(path), *line.split()])

    assert code == EXIT_FOUND
    assert f"trace {trace_id}" in capsys.readouterr().out


def test_repeated_request_id_lists_the_older_traces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An adopted id can repeat: the newest trace is printed, the older ones are named."""
    path = tmp_path / "spans.jsonl"
    older = write_request(path, "client-7")
    newer = write_request(path, "client-7")

    code = run(["--file", str(path), "client-7"])

    out = capsys.readouterr().out
    assert code == EXIT_FOUND
    assert out.startswith(f"trace {newer}")
    assert f"1 older trace(s) also match request id client-7: {older}" in out


def test_damaged_lines_are_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line cut short by a crash, or foreign JSON, does not hide the spans around it."""
    path = tmp_path / "spans.jsonl"
    trace_id = write_request(path, "k3v9q2xd")
    with path.open("a") as file:
        file.write('{"resourceSpans": [{"scopeSpans": "k3v9q2xd"}]}\n["k3v9q2xd"]\n{"resou')

    code = run(["--file", str(path), "k3v9q2xd"])

    assert code == EXIT_FOUND
    assert f"trace {trace_id}  (2 spans" in capsys.readouterr().out


def test_not_found_names_likely_reasons(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An id absent from the file exits 1 and says why that may be."""
    path = tmp_path / "spans.jsonl"
    write_request(path, "aaaa0001")

    code = run(["--file", str(path), "k3v9q2xd"])

    err = capsys.readouterr().err
    assert code == EXIT_NOT_FOUND
    assert f"no span with request id k3v9q2xd in {path}" in err
    assert f"another file than {path} ({SPANS_FILE_ENV})" in err
    assert "not sampled" in err


def test_missing_file_is_a_backend_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No span file at all exits 3 with one line that says how to point at the right one."""
    code = run(["--file", str(tmp_path / "none.jsonl"), "k3v9q2xd"])

    err = capsys.readouterr().err
    assert code == EXIT_BACKEND_ERROR
    assert err.count("\n") == 1
    assert f"set {SPANS_FILE_ENV} or pass --file" in err


def test_path_comes_from_the_exporters_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --file the lookup reads the file the exporter writes: $OTEL_REQID_SPANS_FILE,
    else ./spans.jsonl."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SPANS_FILE_ENV, raising=False)
    default_trace = write_request(tmp_path / DEFAULT_SPANS_FILE, "k3v9q2xd")
    assert run(["k3v9q2xd"]) == EXIT_FOUND
    assert f"trace {default_trace}" in capsys.readouterr().out

    elsewhere = tmp_path / "elsewhere.jsonl"
    other_trace = write_request(elsewhere, "k3v9q2xd")
    monkeypatch.setenv(SPANS_FILE_ENV, str(elsewhere))
    assert run(["k3v9q2xd"]) == EXIT_FOUND
    assert f"trace {other_trace}" in capsys.readouterr().out


def test_bad_input_is_a_usage_error_that_never_echoes_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rejected id exits 2, and its escape sequence reaches the terminal only escaped."""
    code = run(["--file", str(tmp_path / "spans.jsonl"), "k3v9\x1b[2Jq2xd"])

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "\x1b" not in err
    assert "'k3v9\\x1b[2Jq2xd' is neither a trace id" in err
