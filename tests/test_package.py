"""The package's public surface, its README, and the two commands the README opens with."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import otel_reqid_logging
from tests.subprocess_app import BIN, ROOT

README = (ROOT / "README.md").read_text()
PUBLIC_MODULES = [
    "otel_reqid_logging",
    "otel_reqid_logging.access_log",
    "otel_reqid_logging.cli",
    "otel_reqid_logging.compat",
    "otel_reqid_logging.demo",
    "otel_reqid_logging.export",
    "otel_reqid_logging.file_exporter",
    "otel_reqid_logging.instrumentor",
    "otel_reqid_logging.lookup",
    "otel_reqid_logging.middleware",
    "otel_reqid_logging.records",
    "otel_reqid_logging.sentry",
    "otel_reqid_logging.structlog",
    "otel_reqid_logging.threads",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_name_resolves(name: str) -> None:
    """Each public module lists ``__all__``, and every name in it exists."""
    module = importlib.import_module(name)
    assert module.__all__
    for public in module.__all__:
        assert hasattr(module, public), f"{name}.{public}"


def test_contract_names_are_exported() -> None:
    """The names other code relies on are importable from the package itself."""
    for name in (
        "RequestIdMiddleware",
        "RequestIdAccessLogger",
        "RequestIdInstrumentor",
        "current_request_id",
        "current_trace_id",
        "request_id",
        "REQUEST_ID_KEY",
        "request_id_middleware",
        "setup_logging_request_id_prefix",
        "RequestIdContextAccessLogger",
    ):
        assert name in otel_reqid_logging.__all__


def test_import_has_no_side_effects() -> None:
    """Importing the package sets no record factory, no provider, and imports no Sentry."""
    code = (
        "import logging, sys\n"
        "factory = logging.getLogRecordFactory()\n"
        "import otel_reqid_logging\n"
        "from opentelemetry import trace\n"
        "assert logging.getLogRecordFactory() is factory\n"
        "assert type(trace.get_tracer_provider()).__name__ == 'ProxyTracerProvider'\n"
        "assert 'sentry_sdk' not in sys.modules\n"
        "print('clean')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.stdout.strip() == "clean", result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the very test command the README gives."""
    commands = re.findall(r"^(python3 dev\.py \w+)", README, flags=re.MULTILINE)
    assert commands[:2] == ["python3 dev.py demo", "python3 dev.py test"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "python3 dev.py test" in [line.strip() for line in ci]


def test_demo_shows_lines_and_finds_the_failing_request(tmp_path: Path) -> None:
    """`otel-reqid-logging demo` prints interleaved lines and looks the failure up."""
    spans = tmp_path / "demo.jsonl"
    result = subprocess.run(
        [str(BIN / "otel-reqid-logging"), "demo", "--spans-file", str(spans)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    failing = re.search(r"ERROR \S+ \[req:(\S+) trace:([0-9a-f]{32})\] Error handling request", out)
    assert failing is not None, out
    request_id, trace_id = failing.groups()
    assert out.count(f"[req:{request_id} trace:{trace_id}]") >= 3
    assert len(set(re.findall(r"\[req:(\S+) trace:", out))) == 4
    tail = out[out.index("== Looking up") :]
    assert f"trace {trace_id}" in tail
    assert f"request.id={request_id}" in tail
    assert "ERROR" in tail
