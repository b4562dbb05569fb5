"""A pytest plugin for another project's test suite: the library on, and every outcome noted.

``tests/upstream.py`` passes it with ``-p`` to a pytest run of an upstream suite (aiohttp's,
sentry-python's) in that suite's own virtual environment. ``OTEL_REQID_UPSTREAM_MODE``
says what is on during the run:

- ``plain``: nothing; the run every other one is compared with;
- ``sdk``: an SDK ``TracerProvider`` (spans recorded into memory), then
  ``RequestIdInstrumentor().instrument()``;
- ``api``: ``RequestIdInstrumentor().instrument()`` with the OpenTelemetry API alone.

Every test's outcome (with where and why it failed) is written as JSON to the file
``OTEL_REQID_UPSTREAM_OUTCOMES`` names when the session ends.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "pytest_collectreport",
    "pytest_configure",
    "pytest_runtest_logreport",
    "pytest_sessionfinish",
]

MODE_ENV = "OTEL_REQID_UPSTREAM_MODE"
OUTCOMES_ENV = "OTEL_REQID_UPSTREAM_OUTCOMES"
MODES = ("plain", "sdk", "api")

_outcomes: dict[str, dict[str, str]] = {}


def _turn_on(mode: str) -> None:
    from otel_reqid_logging import RequestIdInstrumentor  # noqa: PLC0415  (only when asked)

    if mode == "sdk":
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
            InMemorySpanExporter,
        )

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        trace.set_tracer_provider(provider)
    RequestIdInstrumentor().instrument()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Turn the library on before the suite's first test, as an app would at start."""
    mode = os.environ.get(MODE_ENV, "plain")
    if mode not in MODES:
        raise pytest.UsageError(f"{MODE_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    if mode != "plain":
        _turn_on(mode)


def _failure(report: pytest.TestReport | pytest.CollectReport) -> dict[str, str]:
    crash: Any = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return {"where": f"{crash.path}:{crash.lineno}", "message": str(crash.message)[:500]}
    return {"where": "", "message": str(report.longrepr)[-500:]}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Fold the setup, call and teardown phases of each test into one outcome."""
    noted = _outcomes.get(report.nodeid, {}).get("outcome")
    if noted in {"failed", "error"}:
        return  # the first failure of a test is the one that tells
    if report.failed:
        outcome = "failed" if report.when == "call" else "error"
        _outcomes[report.nodeid] = {"outcome": outcome, **_failure(report)}
    elif report.skipped:
        outcome = "xfailed" if hasattr(report, "wasxfail") else "skipped"
        _outcomes[report.nodeid] = {"outcome": outcome}
    elif report.when == "call":
        outcome = "xpassed" if hasattr(report, "wasxfail") else "passed"
        _outcomes[report.nodeid] = {"outcome": outcome}


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A module that fails to import is an outcome too: an error under its own path."""
    if report.failed:
        _outcomes[report.nodeid] = {"outcome": "error", **_failure(report)}


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the outcomes where the harness reads them."""
    target = os.environ.get(OUTCOMES_ENV)
    # Under pytest-xdist the workers' reports reach the controller, which writes the file.
    if target and not hasattr(session.config, "workerinput"):
        Path(target).write_text(json.dumps(_outcomes, indent=1, sort_keys=True))
