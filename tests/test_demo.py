"""`otel-reqid-logging demo`: two services, one trace, the lookup of the failing request
with both services' spans and lines; the span file it is given is kept, and --serve
honours it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.subprocess_app import BIN, free_port

DEMO = str(BIN / "otel-reqid-logging")


def _demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A wide terminal, so that the waterfall's name column cuts no span name short.
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [DEMO, "demo", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def _span_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


TRACE = re.compile(r"trace:([0-9a-f]{32})")


def test_the_failing_request_is_shown_across_both_services(tmp_path: Path) -> None:
    """The shop calls the payment service through client_trace_config(), so paying is
    one trace across two services. The demo pastes the shop's ERROR line into the lookup
    (as the CLI runs it, with --logs on both services' log files): the trace drawn holds
    the spans of both services, child spans among them, and the lines of both files;
    --html is mentioned at the end."""
    result = _demo(cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    served, marker, looked_up = result.stdout.partition("== Looking up the failing request")
    assert marker, result.stdout
    pasted = next(line for line in served.splitlines() if " ERROR shop " in line)
    trace_id = TRACE.search(pasted)
    assert trace_id is not None
    # Both services wrote lines of the failing request's trace, each to its own log file.
    for service, log_file in (("shop", "demo-shop.log"), ("payment", "demo-payment.log")):
        lines = (tmp_path / log_file).read_text().splitlines()
        assert any(trace_id[1] in line and f" {service} " in line for line in lines), log_file
    assert "--logs demo-shop.log --logs demo-payment.log" in looked_up
    assert trace_id[1] in looked_up
    for service in ("otel-reqid-demo", "otel-reqid-demo-payment"):
        assert service in looked_up
    for span in ("POST /orders/{order}/pay", "SELECT cart", "charge card", "POST /charges"):
        assert span in looked_up
    assert "POST provider /v1/charges" in looked_up
    # The lines of both log files, drawn under their spans.
    assert "log lines (" in looked_up
    assert "in 2 files" in looked_up
    assert "paying order 1001" in looked_up
    assert "charging card for order 1001" in looked_up
    assert "ConnectionError: card provider timed out for order 1001" in looked_up
    # Only the failing request's lines: the other orders' are not shown.
    assert "order 1002" not in looked_up
    assert "add --html trace.html to that command" in looked_up


def test_an_existing_span_file_is_appended_to_not_deleted(tmp_path: Path) -> None:
    """`demo --spans-file PATH` may name an app's own span file: what it held stays, the
    demo's spans come after it, and the lookup still finds the failing request. The log
    files beside it are appended to as well."""
    spans = tmp_path / "spans.jsonl"
    earlier = '{"resourceSpans": []}\n'
    spans.write_text(earlier)
    shop_log = tmp_path / "demo-shop.log"
    earlier_line = "2026-12-01 08:00:00,000 INFO app [req:- trace:-] an app's own line\n"
    shop_log.write_text(earlier_line)

    result = _demo("--spans-file", str(spans), cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert spans.read_text().startswith(earlier)
    assert shop_log.read_text().startswith(earlier_line)
    assert len(shop_log.read_text().splitlines()) > 1
    assert len(_span_lines(spans)) > 1
    assert "card provider timed out for order 1001" in result.stdout.partition("== Looking up")[2]


def test_the_default_span_file_is_in_the_working_directory(tmp_path: Path) -> None:
    """With no --spans-file the demo writes demo-spans.jsonl where it runs, and --help
    says so, with no reStructuredText markup in the description."""
    result = _demo(cwd=tmp_path)
    usage = _demo("--help", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert _span_lines(tmp_path / "demo-spans.jsonl")
    assert "default: demo-spans.jsonl" in usage.stdout
    assert "``" not in usage.stdout


def _wait_for(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the demo did not listen on port {port}")


def test_serve_exports_to_the_span_file_it_is_given(tmp_path: Path) -> None:
    """`demo --serve --spans-file PATH` writes its spans to PATH (it used to ignore the
    option and write wherever the environment said)."""
    spans = tmp_path / "served.jsonl"
    port = free_port()
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_TRACES", "OTEL_EXPORTER", "OTEL_REQID"))
    }
    serve = ["--serve", "--host", "127.0.0.1", "--port", str(port), "--spans-file", str(spans)]
    process = subprocess.Popen(
        [DEMO, "demo", *serve],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(port, process)
        url = f"http://127.0.0.1:{port}/orders/7"
        with urllib.request.urlopen(url, timeout=10) as response:
            request_id = response.headers["X-Request-ID"]
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]

    assert request_id, output
    assert request_id in spans.read_text(), output
    assert not (tmp_path / "spans.jsonl").exists()
