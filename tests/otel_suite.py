"""OpenTelemetry's own test module for its aiohttp-server instrumentation, fetched and run.

The module comes from the sdist of ``opentelemetry-instrumentation-aiohttp-server`` at the
version ``dev-constraints.txt`` pins, and the helpers it imports
(``opentelemetry.test.test_base``) from ``opentelemetry-test-utils`` at the same version;
both are downloaded with pip on first use into the tools cache
(``$OTEL_REQID_TOOLS_DIR``, default ``~/.cache/otel-reqid-logging/tools``), keyed by
version. None of it is ever copied into this repository.

``run_suite`` runs the module in a subprocess, as it is or with ``alias=True``: then a
pytest plugin binds the name ``AioHttpServerInstrumentor`` that the module imports to
``otel_reqid_logging.RequestIdInstrumentor`` while the module is imported. The alias
has no behaviour of its own; OpenTelemetry's package stays installed and untouched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

import pytest

from tests.tools import REPO, install_lock, tools_dir

__all__ = [
    "SUITE_DISTRIBUTION",
    "SUITE_MODULE",
    "Outcome",
    "pinned_version",
    "run_suite",
    "suite_folder",
]

SUITE_DISTRIBUTION: Final = "opentelemetry-instrumentation-aiohttp-server"
SUITE_MODULE: Final = "test_aiohttp_server_integration.py"
_TEST_UTILS: Final = "opentelemetry-test-utils"
_CONSTRAINTS: Final = REPO / "dev-constraints.txt"
_MARKER: Final = ".otel-reqid-installed.json"
_TIMEOUT_S: Final = 600.0

# Binds the test module's ``AioHttpServerInstrumentor`` to ours while pytest imports it.
_ALIAS_PLUGIN: Final = '''\
"""While pytest imports a test module, OpenTelemetry's aiohttp-server module is this alias."""

import sys
import types

import pytest

from otel_reqid_logging import RequestIdInstrumentor

_NAME = "opentelemetry.instrumentation.aiohttp_server"
_ALIAS = types.ModuleType(_NAME)
_ALIAS.AioHttpServerInstrumentor = RequestIdInstrumentor


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    if not isinstance(collector, pytest.Module):
        return (yield)
    real = sys.modules.get(_NAME)
    sys.modules[_NAME] = _ALIAS
    try:
        return (yield)
    finally:
        if real is None:
            del sys.modules[_NAME]
        else:
            sys.modules[_NAME] = real
'''


def pinned_version(distribution: str) -> str:
    """Return the version ``dev-constraints.txt`` pins for ``distribution``."""
    pin = re.search(rf"^{re.escape(distribution)}==(\S+)", _CONSTRAINTS.read_text(), re.MULTILINE)
    if pin is None:
        pytest.fail(f"dev-constraints.txt pins no {distribution}", pytrace=False)
    return pin[1]


def _pip_download(requirement: str, destination: Path, *, sdist: bool) -> Path:
    kind = ("--no-binary", ":all:") if sdist else ("--only-binary", ":all:")
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *kind),
            *(requirement, "--dest", str(destination)),
        ],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        pytest.fail(
            f"pip could not download {requirement} (a package index is needed):\n"
            f"{completed.stderr[-4000:]}",
            pytrace=False,
        )
    (found,) = destination.glob("*.tar.gz" if sdist else "*.whl")
    return found


def suite_folder(version: str) -> Path:
    """Return the cached folder with OpenTelemetry's test module and its helpers.

    ``tests/`` holds the sdist's test modules; ``site/`` the ``opentelemetry.test``
    package of opentelemetry-test-utils, put on the subprocess's path.
    """
    folder = tools_dir() / f"otel-aiohttp-server-suite-{version}"
    marker = folder / _MARKER
    expected = {"suite": f"{SUITE_DISTRIBUTION}=={version}", "helpers": f"{_TEST_UTILS}=={version}"}

    def installed() -> bool:
        try:
            return bool(json.loads(marker.read_text()) == expected)
        except (OSError, ValueError):
            return False

    if installed():
        return folder
    with install_lock("otel-aiohttp-server-suite"):
        if installed():
            return folder
        tests, site = folder / "tests", folder / "site"
        tests.mkdir(parents=True, exist_ok=True)
        site.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as download:
            sdist = _pip_download(f"{SUITE_DISTRIBUTION}=={version}", Path(download), sdist=True)
            with tarfile.open(sdist) as archive:
                # Only the test modules, written by name: nothing else of the archive is used.
                for member in archive.getmembers():
                    path = PurePosixPath(member.name)
                    if member.isfile() and path.parent.name == "tests" and path.suffix == ".py":
                        source = archive.extractfile(member)
                        assert source is not None
                        (tests / path.name).write_bytes(source.read())
            wheel = _pip_download(f"{_TEST_UTILS}=={version}", Path(download), sdist=False)
            with zipfile.ZipFile(wheel) as helpers:
                for name in helpers.namelist():
                    if name.startswith("opentelemetry/test/") and name.endswith(".py"):
                        target = site / name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(helpers.read(name))
        if not (tests / SUITE_MODULE).is_file():
            pytest.fail(f"the {SUITE_DISTRIBUTION} {version} sdist has no tests/{SUITE_MODULE}")
        marker.write_text(json.dumps(expected))
    return folder


@dataclass(frozen=True)
class Outcome:
    """How one test of the suite ended; for a failure, where in the module."""

    outcome: str  # "passed", "failed" or "skipped"
    #: The line of the test module the failure was raised at (0 when none), and its text.
    line: int = 0
    source: str = ""
    message: str = ""


def _failure_line(text: str, module: Path) -> tuple[int, str]:
    """Return the last line of the test module named in a failure's traceback."""
    lines = re.findall(rf"{re.escape(module.name)}:(\d+)", text)
    if not lines:
        return 0, ""
    number = int(lines[-1])
    return number, module.read_text().splitlines()[number - 1].strip()


def run_suite(folder: Path, workdir: Path, *, alias: bool) -> dict[str, Outcome]:
    """Run OpenTelemetry's test module in a subprocess; return test id -> outcome."""
    workdir.mkdir(parents=True, exist_ok=True)
    module = workdir / SUITE_MODULE
    module.write_bytes((folder / "tests" / SUITE_MODULE).read_bytes())
    if alias:
        (workdir / "conftest.py").write_text(_ALIAS_PLUGIN)
    # The suite's own pytest settings (opentelemetry-python-contrib's).
    (workdir / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    report = workdir / "report.xml"
    # OpenTelemetry's variables of this process (and of the developer's shell) stay out.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment["PYTHONPATH"] = str(folder / "site")
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=short"),
            *(f"--junitxml={report}", str(module)),
        ],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    if not report.is_file():
        pytest.fail(f"OpenTelemetry's suite did not run:\n{completed.stdout[-4000:]}")
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314  (our own report)
        failures = [child for child in case if child.tag in {"failure", "error"}]
        name = str(case.get("name"))
        if failures:
            text = "\n".join(
                f"{child.get('message', '')}\n{child.text or ''}" for child in failures
            )
            line, source = _failure_line(text, module)
            outcomes[name] = Outcome("failed", line, source, text)
        elif any(child.tag == "skipped" for child in case):
            outcomes[name] = Outcome("skipped")
        else:
            outcomes[name] = Outcome("passed")
    return outcomes
