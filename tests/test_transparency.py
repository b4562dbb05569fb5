"""The judge: aiohttp's and sentry-python's own test suites, run with the library on.

Each suite comes from the sdist of the version installed here, downloaded at test time
(``tests/upstream.py``; none of it lives in this repository), and runs three times side
by side: plain, with ``RequestIdInstrumentor().instrument()`` and an SDK tracer provider,
and with ``instrument()`` on the OpenTelemetry API alone. A test that fails only with the
library on is a bug of the library, unless it is one of ``DOCUMENTED_DIFFERENCES``:
something the library adds on purpose, said with its reason here and in
docs/reference.md ("What changes with the library on"), which must list the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from tests.upstream import Outcome, SuiteRun, UpstreamSuite, differences, rerun, run_suite

# Other projects' suites in their own venv, ~8 min: the primary interpreter runs them.
pytestmark = pytest.mark.external_tool

REFERENCE: Final = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
_SECTION: Final = "## What changes with the library on"

#: aiohttp's tests of its server and of a client talking to it (server, request, response,
#: middlewares, access log, websockets, static files, run_app, the test utilities).
AIOHTTP: Final = UpstreamSuite(
    name="aiohttp",
    distribution="aiohttp",
    # The tests, their config, and the README one test serves as a static file.
    copy=("tests", "pytest.ini", "README.rst"),
    select=(
        "tests/test_web_*.py",
        "tests/test_client_functional.py",
        "tests/test_client_ws_functional.py",
        "tests/test_run_app.py",
        "tests/test_test_utils.py",
    ),
    # From aiohttp's requirements/test*.txt, what these files and their conftest use:
    # the others (proxy.py, python-on-whales, mypy, codspeed) serve tests not run here.
    test_requirements=(
        "blockbuster==1.5.26",
        'backports-zstd==1.3.0; python_version < "3.14"',
        "brotli==1.2.0",
        "coverage==7.14.1",  # named by a warning filter of aiohttp's pytest.ini
        'isal==1.8.0; python_version < "3.14"',
        "pytest-mock==3.15.1",
        "pytest-timeout==2.4.0",
        "pytest-xdist==3.8.0",
        "trustme==1.2.1",
        "uvloop==0.22.1",
        "zlib-ng==1.0.0",
    ),
    installed_requirements=(
        "aiohttp",
        "opentelemetry-api",
        "opentelemetry-instrumentation",
        "opentelemetry-sdk",
        "pytest",
    ),
    # aiohttp's own selection (its CI runs dev_mode, autobahn and internal apart), in
    # three xdist workers: most of the suite waits on sockets and timers, not on a core.
    addopts='-m "not dev_mode and not autobahn and not internal" --strict-markers -n 3',
    serial_args=("-n", "0"),
    deselect={},
    timeout_s=2400.0,
)

#: sentry-python's tests of its aiohttp integration, which the library's Sentry hook joins.
SENTRY: Final = UpstreamSuite(
    name="sentry",
    distribution="sentry-sdk",
    # The config is a table of pyproject.toml; the package's source is not copied.
    copy=("tests", "pyproject.toml"),
    select=("tests/integrations/aiohttp/test_*.py",),
    test_requirements=(),
    installed_requirements=(
        "aiohttp",
        "sentry-sdk",
        "opentelemetry-api",
        "opentelemetry-instrumentation",
        "opentelemetry-sdk",
        "pytest",
        "pytest-aiohttp",
        "pytest-asyncio",
    ),
    addopts="--tb=short",
    serial_args=(),
    deselect={},
    timeout_s=900.0,
)

#: "suite path::test": why it fails with the library on, in every mode, and is meant to.
DOCUMENTED_DIFFERENCES: Final[dict[str, str]] = {
    "aiohttp tests/test_client_functional.py::test_raw_headers[pyloop]": (
        "the response carries the X-Request-ID header: the test compares the exact list"
    ),
    "aiohttp tests/test_client_functional.py::test_empty_header_values[pyloop]": (
        "the response carries the X-Request-ID header: the test compares the exact list"
    ),
    "aiohttp tests/test_web_app.py::test_app_run_middlewares": (
        "every application gets the library's middleware, so an app without middlewares "
        "of its own runs them"
    ),
}

#: Fewest tests a plain run must pass: fewer means the harness, not the library, broke.
_PLAIN_PASSED_AT_LEAST: Final = {"aiohttp": 1500, "sentry": 40}


@dataclass(frozen=True)
class Verdict:
    """A suite's three runs, and per mode the tests that failed only with the library on
    (and again when run alone)."""

    runs: dict[str, SuiteRun]
    differences: dict[str, dict[str, Outcome]]
    flaky: dict[str, list[str]]


def judged(suite: UpstreamSuite, folder: Path) -> Verdict:
    """Run ``suite`` in every mode; confirm each difference by running the test alone."""
    runs = run_suite(suite, folder)
    found: dict[str, dict[str, Outcome]] = {}
    flaky: dict[str, list[str]] = {}
    for mode in ("sdk", "api"):
        candidates = differences(runs["plain"], runs[mode])
        again = rerun(suite, folder, mode, sorted(candidates)).outcomes if candidates else {}
        found[mode] = {
            test: outcome
            for test, outcome in candidates.items()
            if again.get(test, outcome).failed or again.get(test, outcome).outcome == "missing"
        }
        flaky[mode] = sorted(set(candidates) - set(found[mode]))
    return Verdict(runs, found, flaky)


@pytest.fixture(scope="module")
def aiohttp_verdict(tmp_path_factory: pytest.TempPathFactory) -> Verdict:
    """aiohttp's suite: plain, with an SDK tracer provider, with the API alone."""
    return judged(AIOHTTP, tmp_path_factory.mktemp("aiohttp-suite"))


@pytest.fixture(scope="module")
def sentry_verdict(tmp_path_factory: pytest.TempPathFactory) -> Verdict:
    """sentry-python's aiohttp-integration suite: the same three runs."""
    return judged(SENTRY, tmp_path_factory.mktemp("sentry-suite"))


def _judge(suite: UpstreamSuite, verdict: Verdict, mode: str) -> None:
    plain = verdict.runs["plain"]
    summaries = "\n".join(run.summary() for run in verdict.runs.values())
    # Shown with -rA (and in CI's log): what each run cost.
    print(f"{suite.name}: {summaries}; failed once, passed alone: {verdict.flaky[mode]}")
    passed = sum(outcome.outcome == "passed" for outcome in plain.outcomes.values())
    assert passed >= _PLAIN_PASSED_AT_LEAST[suite.name], (
        f"the plain run of {suite.name}'s suite passed only {passed} tests; "
        f"log {plain.log}\n{summaries}"
    )
    found = {f"{suite.name} {test}": outcome for test, outcome in verdict.differences[mode].items()}
    documented = {test for test in DOCUMENTED_DIFFERENCES if test.startswith(f"{suite.name} ")}
    unexplained = "\n".join(
        f"  {test}\n    {outcome.outcome} at {outcome.where}: {outcome.message}"
        for test, outcome in sorted(found.items())
        if test not in documented
    )
    gone = "\n".join(f"  {test}" for test in sorted(documented - set(found)))
    assert not unexplained, (
        f"{suite.name}'s own tests that fail only with the library on ({mode}); "
        f"log {verdict.runs[mode].log}\n{unexplained}\n{summaries}"
    )
    assert not gone, f"documented differences that no longer occur ({mode}):\n{gone}"


@pytest.mark.parametrize("mode", ["sdk", "api"])
def test_aiohttp_suite_differs_only_where_documented(aiohttp_verdict: Verdict, mode: str) -> None:
    """aiohttp's own tests pass with the library on, but for the documented differences."""
    _judge(AIOHTTP, aiohttp_verdict, mode)


@pytest.mark.parametrize("mode", ["sdk", "api"])
def test_sentry_aiohttp_suite_differs_only_where_documented(
    sentry_verdict: Verdict, mode: str
) -> None:
    """sentry-python's aiohttp-integration tests pass with the library on."""
    _judge(SENTRY, sentry_verdict, mode)


def documented_in_reference() -> dict[str, str]:
    """The table of docs/reference.md's section: "suite path::test" -> reason."""
    text = REFERENCE.read_text()
    assert _SECTION in text, f"docs/reference.md has no section {_SECTION!r}"
    section = text.split(_SECTION, 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| *(\w+) *\| *`([^`]+)` *\| *(.+?) *\|$", section, re.MULTILINE)
    return {f"{suite} {test}": reason for suite, test, reason in rows}


def test_reference_lists_the_documented_differences() -> None:
    """Users read the same differences, with the same reasons, that the judge allows."""
    assert documented_in_reference() == DOCUMENTED_DIFFERENCES


def test_a_difference_is_a_failure_with_the_library_on_only(tmp_path: Path) -> None:
    """What counts against the library: failing (or missing) only with it on; a test that
    fails without it too, or is skipped in both, does not."""

    def run(mode: str, **outcomes: str) -> SuiteRun:
        found = {name: Outcome(outcome) for name, outcome in outcomes.items()}
        return SuiteRun(mode, found, wall_s=1.0, cpu_s=1.0, returncode=0, log=tmp_path)

    plain = run("plain", a="passed", b="failed", c="passed", d="skipped", e="passed", f="passed")
    on = run("sdk", a="failed", b="failed", c="passed", d="error", f="xfailed", g="error")

    assert sorted(differences(plain, on)) == ["a", "d", "e", "g"]
    assert differences(plain, on)["e"].outcome == "missing"
