"""Other projects' own test suites, downloaded at test time and run with the library on.

An upstream suite comes from the sdist of the version installed here (pip downloads it,
with the user's own index configuration; the extracted tree is cached under the tools
folder, keyed by version; none of it lives in this repository). It runs as a subprocess
pytest in a virtual environment of its own: the suite's own test dependencies, pinned in
its ``UpstreamSuite``, with every package this interpreter also has held to the version
installed here. A venv of its own, not the dev extra: the suites' test dependencies
(aiohttp's blockbuster, uvloop, brotli, isal, zlib-ng, trustme, pytest-xdist, ...) stay
out of the dev environment, and aiohttp's suite runs without pytest-asyncio and
pytest-aiohttp, which the dev environment has and which would contend with aiohttp's own
pytest plugin. The library itself is not installed there: the run reads it from this
checkout, so two checkouts sharing the tools folder each test their own code.

Each run passes ``tests/upstream_plugin.py`` with ``-p``: it turns the library on
(``sdk``, ``api``) or not (``plain``) and writes every test's outcome to a JSON file.
The runs of one suite go side by side; ``rerun`` runs chosen tests again, one at a time.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from tests.tools import install_lock, requirements_venv, tools_dir

__all__ = [
    "MODES",
    "Outcome",
    "SuiteRun",
    "UpstreamSuite",
    "differences",
    "installed_version",
    "rerun",
    "run_suite",
    "sdist_tree",
    "suite_venv",
]

REPO: Final = Path(__file__).resolve().parent.parent
PLUGIN: Final = Path(__file__).resolve().parent / "upstream_plugin.py"
_PLUGIN_MODULE: Final = "otel_reqid_upstream_plugin"
#: The folder of a run put on its PYTHONPATH: the library and the plugin.
_LIBRARY_DIR: Final = "_otel_reqid"
#: plain: nothing on; sdk: an SDK tracer provider, then instrument(); api: instrument() alone.
MODES: Final = ("plain", "sdk", "api")
_DOWNLOAD_TIMEOUT_S: Final = 600.0
_FAILED: Final = frozenset({"failed", "error"})
#: Never a constraint: the project itself, which the runs read from this checkout.
_NOT_CONSTRAINED: Final = frozenset({"otel-reqid-logging"})
#: Settings of the machinery running this suite that must not leak into the upstream run.
_DROPPED_ENV_PREFIXES: Final = ("OTEL_", "PYTEST_", "SENTRY_", "PYTHONPATH", "COV_CORE_")


@dataclass(frozen=True)
class UpstreamSuite:
    """Where an upstream suite is, what it needs, and how it is run."""

    #: Short name: folders and reports use it.
    name: str
    #: The installed distribution whose sdist holds the suite, at the installed version.
    distribution: str
    #: Paths inside the sdist copied into the run's folder (files or whole folders); the
    #: package's own source is left out, so the tests import the installed package.
    copy: tuple[str, ...]
    #: Test files to run, as globs relative to the run's folder.
    select: tuple[str, ...]
    #: The suite's own test dependencies, pinned: they are not in the dev environment.
    test_requirements: tuple[str, ...]
    #: Further packages of the venv, at whatever version is installed here.
    installed_requirements: tuple[str, ...]
    #: Replaces the suite's ``addopts`` (coverage, xdist, ...), which name tools not needed here.
    addopts: str
    #: Added to ``addopts`` when tests are run again one at a time (``-n 0`` under xdist).
    serial_args: tuple[str, ...]
    #: Test ids (``path::name``) left out of every run, each with the reason.
    deselect: Mapping[str, str]
    timeout_s: float


@dataclass(frozen=True)
class Outcome:
    """One test's outcome in one run, with where and why when it failed."""

    outcome: str
    where: str = ""
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome in _FAILED


@dataclass(frozen=True)
class SuiteRun:
    """One pytest run of a suite in one mode."""

    mode: str
    outcomes: dict[str, Outcome]
    wall_s: float
    #: CPU seconds of the run and its worker processes.
    cpu_s: float
    returncode: int
    log: Path

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
        parts = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
        return (
            f"{self.mode}: {parts} in {self.wall_s:.0f} s, {self.cpu_s:.0f} s of CPU "
            f"(exit {self.returncode})"
        )


def installed_version(distribution: str) -> str:
    """The version of ``distribution`` installed in this interpreter; a clear failure if none."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{distribution} is not installed: install the dev extra", pytrace=False)


def _extract(archive_path: Path, into: Path) -> None:
    with tarfile.open(archive_path) as archive:
        # The "data" filter refuses links and paths that leave the folder.
        archive.extractall(into, filter="data")


def sdist_tree(distribution: str, version: str) -> Path:
    """The extracted sdist of ``distribution==version``, downloaded once into the tools folder."""
    home = tools_dir() / "sdists" / f"{distribution}-{version}"
    marker = home / ".complete"
    if marker.exists():
        return home / "tree"
    with install_lock(f"sdist-{distribution}"):
        if marker.exists():  # another process finished while we waited
            return home / "tree"
        with tempfile.TemporaryDirectory(dir=tools_dir()) as scratch:
            requirement = f"{distribution}=={version}"
            download = subprocess.run(
                [
                    *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                    *("--no-binary", ":all:", requirement, "--dest", scratch),
                ],
                capture_output=True,
                text=True,
                timeout=_DOWNLOAD_TIMEOUT_S,
                check=False,
            )
            if download.returncode != 0:
                pytest.fail(
                    f"pip could not download the sdist of {requirement} (a package index "
                    f"with sdists is needed):\n{download.stderr[-4000:]}",
                    pytrace=False,
                )
            (archive,) = Path(scratch).glob("*.tar.gz")
            extracted = Path(scratch) / "extracted"
            _extract(archive, extracted)
            (top,) = extracted.iterdir()  # an sdist holds one folder, name-version
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
            top.rename(home / "tree")
        marker.write_text(requirement)
    return home / "tree"


def _installed_constraints() -> str:
    """Every distribution of this interpreter at its installed version, as pip constraints."""
    pins = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in _NOT_CONSTRAINED:
            pins.add(f"{name.lower()}=={dist.version}")
    return "\n".join(sorted(pins)) + "\n"


def suite_venv(suite: UpstreamSuite) -> Path:
    """The suite's own virtual environment: its test dependencies and the library's."""
    return requirements_venv(
        f"suite-{suite.name}",
        [*suite.test_requirements, *suite.installed_requirements],
        constraints=_installed_constraints(),
    )


def _prepare(suite: UpstreamSuite, tree: Path, folder: Path) -> None:
    """Copy the suite into ``folder``, and beside it the library and the plugin."""
    for name in suite.copy:
        source = tree / name
        if not source.exists():
            pytest.fail(f"{suite.distribution}'s sdist has no {name}", pytrace=False)
        if source.is_dir():
            shutil.copytree(source, folder / name)
        else:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    # The library from this checkout and the plugin, and nothing else of the repository:
    # its own `tests` package would shadow the upstream suite's.
    library = folder / _LIBRARY_DIR
    library.mkdir()
    (library / "otel_reqid_logging").symlink_to(REPO / "otel_reqid_logging")
    (library / f"{_PLUGIN_MODULE}.py").symlink_to(PLUGIN)


def _environment(library: Path, mode: str, outcomes: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
    env.update(
        PYTHONPATH=str(library),
        OTEL_REQID_UPSTREAM_MODE=mode,
        OTEL_REQID_UPSTREAM_OUTCOMES=str(outcomes),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _read_outcomes(path: Path) -> dict[str, Outcome]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {test: Outcome(**fields) for test, fields in raw.items()}


@dataclass
class _Started:
    label: str
    process: subprocess.Popen[bytes]
    outcomes: Path
    log: Path
    began: float


def _start(
    suite: UpstreamSuite,
    workdir: Path,
    mode: str,
    tests: Sequence[str],
    extra: Sequence[str],
    *,
    label: str,
) -> _Started:
    python = suite_venv(suite) / "bin" / "python"
    args = [
        *(str(python), "-m", "pytest", "-p", _PLUGIN_MODULE, "-p", "no:cacheprovider"),
        *("-o", f"addopts={suite.addopts}", "-q", "-rN", "--no-header", *extra),
        *(arg for test in suite.deselect for arg in ("--deselect", test)),
        *tests,
    ]
    outcomes = workdir / f"outcomes-{label}.json"
    log = workdir / f"pytest-{label}.log"
    env = _environment(workdir / _LIBRARY_DIR, mode, outcomes)
    with log.open("wb") as sink:
        # A session of its own, so that stopping it stops its xdist workers too.
        process = subprocess.Popen(
            args,
            cwd=workdir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return _Started(label, process, outcomes, log, time.monotonic())


def _finish(suite: UpstreamSuite, started: _Started) -> SuiteRun:
    """Wait for the run (bounded), and read its outcomes and its CPU time."""
    pid = started.process.pid
    deadline = started.began + suite.timeout_s
    while True:
        # wait4 gives the run's CPU time, its xdist workers' included.
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            _stop([started])
            pytest.fail(
                f"{suite.name} ({started.label}) took over {suite.timeout_s:.0f} s; "
                f"log {started.log}",
                pytrace=False,
            )
        time.sleep(0.5)
    started.process.returncode = os.waitstatus_to_exitcode(status)
    run = SuiteRun(
        mode=started.label,
        outcomes=_read_outcomes(started.outcomes),
        wall_s=time.monotonic() - started.began,
        cpu_s=usage.ru_utime + usage.ru_stime,
        returncode=started.process.returncode,
        log=started.log,
    )
    if not run.outcomes:
        text = run.log.read_text(errors="replace")[-4000:]
        pytest.fail(f"{suite.name} ({run.mode}) reported no outcome; log {run.log}:\n{text}")
    return run


def _stop(started: Sequence[_Started]) -> None:
    """Stop the runs still going (a timeout, an interrupt), workers and all."""
    for one in started:
        if one.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(one.process.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                one.process.wait()


def run_suite(
    suite: UpstreamSuite, folder: Path, modes: Sequence[str] = MODES
) -> dict[str, SuiteRun]:
    """Run ``suite`` once per mode, side by side, each in its own copy ``folder/mode``."""
    tree = sdist_tree(suite.distribution, installed_version(suite.distribution))
    started: list[_Started] = []
    try:
        for mode in modes:
            workdir = folder / mode
            workdir.mkdir(parents=True)
            _prepare(suite, tree, workdir)
            tests = _selected(suite, workdir)
            started.append(_start(suite, workdir, mode, tests, (), label=mode))
        return {one.label: _finish(suite, one) for one in started}
    finally:
        _stop(started)


def rerun(suite: UpstreamSuite, folder: Path, mode: str, tests: Sequence[str]) -> SuiteRun:
    """Run ``tests`` again, one at a time, in the copy ``run_suite`` made for ``mode``.

    Side by side on two cores a test that waits on a timer can fail once from load alone;
    a difference counts only when the test fails again, run alone.
    """
    started = _start(suite, folder / mode, mode, tests, suite.serial_args, label=f"{mode}-again")
    try:
        return _finish(suite, started)
    finally:
        _stop([started])


def _selected(suite: UpstreamSuite, workdir: Path) -> list[str]:
    found = sorted(
        str(path.relative_to(workdir)) for pattern in suite.select for path in workdir.glob(pattern)
    )
    if not found:
        pytest.fail(f"no test file of {suite.name} matches {suite.select}", pytrace=False)
    return found


def differences(plain: SuiteRun, on: SuiteRun) -> dict[str, Outcome]:
    """The tests that fail (or are missing) with the library on and do not fail without it."""
    found = {}
    for test, before in plain.outcomes.items():
        after = on.outcomes.get(test, Outcome("missing"))
        if not before.failed and (after.failed or after.outcome == "missing"):
            found[test] = after
    for test, after in on.outcomes.items():
        if test not in plain.outcomes and after.failed:
            found[test] = after
    return found
