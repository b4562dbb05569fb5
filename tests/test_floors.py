"""The built wheel, installed into fresh virtual environments, works at what it declares.

One environment holds the plain install (no extras): no SDK, and requests still get their
ids. Others hold the lowest versions the wheel's metadata allows, resolved by uv's
``--resolution lowest-direct`` with the wheel's requirements as the direct ones: the core
tests run there, and the demo runs at the ``sdk`` extra's floors.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from packaging.requirements import Requirement
from packaging.version import Version

from otel_reqid_logging.file_exporter import SpansFileExporter
from tests.subprocess_app import ROOT
from tests.wheels import (
    CONSTRAINTS,
    clean_env,
    install,
    make_venv,
    requirements,
    run,
    uv,
    versions,
)

#: Tests of the core that run against the lowest versions; they need the SDK only as the
#: test harness (in-memory exporter), installed at the API's version.
CORE_TESTS = [
    "test_access_log.py",
    "test_compat.py",
    "test_hostile_headers.py",
    "test_instrumentor.py",
    "test_lookup_query.py",
    "test_lookup_render.py",
    "test_middleware.py",
    "test_records.py",
    "test_threads.py",
]
#: What those tests import besides the package; OpenTelemetry's own instrumentations are
#: installed at the version of opentelemetry-instrumentation the floor resolved.
TEST_TOOLS = ["pytest", "pytest-aiohttp", "pytest-asyncio", "hypothesis"]
INSTRUMENTATION_COMPANIONS = [
    "opentelemetry-instrumentation-aiohttp-server",
    "opentelemetry-instrumentation-logging",
]


@pytest.fixture(scope="session")
def plain_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment with `pip install otel-reqid-logging` and nothing else."""
    python = make_venv(tmp_path_factory.mktemp("plain") / "venv")
    install(python, wheel)
    return python


def test_core_requirements_are_the_api_only(wheel: Path) -> None:
    """The plain install asks for aiohttp, the OpenTelemetry API and instrumentation only."""
    names = sorted(Requirement(line).name for line in requirements(wheel))
    assert names == ["aiohttp", "opentelemetry-api", "opentelemetry-instrumentation"]
    sdk = sorted(Requirement(line).name for line in requirements(wheel, extra="sdk"))
    assert sdk == ["opentelemetry-exporter-otlp-json-file", "opentelemetry-sdk"]


def test_plain_install_has_no_sdk_and_gives_ids(plain_python: Path, tmp_path: Path) -> None:
    """No SDK in the plain install, yet handler lines, access lines and headers carry ids."""
    assert "opentelemetry-sdk" not in versions(plain_python)
    check = tmp_path / "check.py"
    shutil.copy(ROOT / "tests" / "plain_install_check.py", check)
    report = json.loads(run(plain_python, check, cwd=tmp_path))

    assert "site-packages" in report["package"]  # the wheel, not the source tree
    assert report["sdk_importable"] is False
    lines = report["lines"]
    assert len(lines) == 4, lines
    for way, request_id in report["headers"].items():
        assert re.fullmatch(r"[0-9a-z]{8}", request_id), way
        mine = [line for line in lines if f"[req:{request_id} trace:" in line]
        assert len(mine) == 2, (way, lines)
        assert " INFO shop " in mine[0]
        assert mine[0].endswith("saying hello")
        assert " INFO aiohttp.access " in mine[1]
        assert '"GET / HTTP/1.1" 200' in mine[1]
        assert len({re.findall(r"trace:([0-9a-f]{32})\]", line)[0] for line in mine}) == 1


def test_plain_install_demo_names_the_sdk_extra(plain_python: Path, tmp_path: Path) -> None:
    """The demo needs the SDK: in the plain install it says so in one line."""
    completed = subprocess.run(
        [str(plain_python.parent / "otel-reqid-logging"), "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert completed.returncode == 2
    (line,) = completed.stderr.strip().splitlines()
    assert line.endswith("pip install 'otel-reqid-logging[sdk]'")


def test_plain_install_looks_a_request_up(plain_python: Path, tmp_path: Path) -> None:
    """`lookup` is part of the core: the plain install reads a span file an SDK wrote."""
    spans = tmp_path / "spans.jsonl"
    provider = TracerProvider()  # here, where the SDK is installed
    provider.add_span_processor(SimpleSpanProcessor(SpansFileExporter(spans)))
    tracer = provider.get_tracer("tests.floors")
    tracer.start_span("GET /", kind=SpanKind.SERVER, attributes={"request.id": "k3v9q2xd"}).end()
    provider.shutdown()

    out = run(plain_python.parent / "otel-reqid-logging", "lookup", "--file", spans, "k3v9q2xd")
    assert re.search(r"^trace [0-9a-f]{32} ", out, flags=re.MULTILINE), out
    assert "request.id=k3v9q2xd" in out


@pytest.fixture(scope="session")
def lowest_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel at the lowest versions of its core requirements, plus the test harness."""
    python = make_venv(tmp_path_factory.mktemp("lowest") / "venv")
    install(python, wheel, *requirements(wheel), lowest=True)
    floors = versions(python)
    # The harness must not move what the floor resolved: pin it, and take the rest from
    # the dev constraints.
    harness = tmp_path_factory.mktemp("lowest") / "harness.txt"
    kept = [
        line
        for line in CONSTRAINTS.read_text().splitlines()
        if line
        and not line.startswith((" ", "#"))
        and Requirement(line).name.lower() not in floors
        and not Requirement(line).name.startswith("opentelemetry-")
    ]
    harness.write_text("\n".join([*(f"{n}=={v}" for n, v in floors.items()), *kept]) + "\n")
    instrumentation = floors["opentelemetry-instrumentation"]
    run(
        uv(),
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        "--constraint",
        harness,
        f"opentelemetry-sdk=={floors['opentelemetry-api']}",
        *(f"{name}=={instrumentation}" for name in INSTRUMENTATION_COMPANIONS),
        *TEST_TOOLS,
    )
    return python


def test_lowest_versions_are_the_declared_floors(wheel: Path, lowest_python: Path) -> None:
    """The lowest-versions environment really holds each core requirement's minimum."""
    installed = versions(lowest_python)
    for line in requirements(wheel):
        requirement = Requirement(line)
        (floor,) = (spec.version for spec in requirement.specifier if spec.operator == ">=")
        assert Version(installed[requirement.name]) == Version(floor), requirement.name


def test_core_tests_pass_at_the_lowest_versions(lowest_python: Path, tmp_path: Path) -> None:
    """The core tests, run from a copy outside the tree, pass against the installed wheel."""
    for folder in ("tests", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    completed = subprocess.run(
        [
            str(lowest_python),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            # OpenTelemetry's aiohttp-server instrumentation of that age subclasses
            # web.Application, which aiohttp warns about; the warning is theirs, not ours.
            "-W",
            "ignore:Inheritance class _InstrumentedApplication:DeprecationWarning",
            # That age of it also ignores tracer_provider (its tracer is the global one, made
            # at import), so its span cannot reach the test's exporter.
            "--deselect",
            "tests/test_instrumentor.py::test_one_server_span_beside_otel_aiohttp_server",
            *(f"tests/{name}" for name in CORE_TESTS),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-3000:]
    assert " passed" in completed.stdout.strip().splitlines()[-1]


def test_sdk_extra_works_at_its_floors(wheel: Path, tmp_path: Path) -> None:
    """At the sdk extra's lowest versions, the demo exports spans and finds one again."""
    python = make_venv(tmp_path / "venv")
    install(python, wheel, *requirements(wheel), *requirements(wheel, extra="sdk"), lowest=True)
    installed = versions(python)
    for line in requirements(wheel, extra="sdk"):
        requirement = Requirement(line)
        (floor,) = (spec.version for spec in requirement.specifier if spec.operator == ">=")
        assert Version(installed[requirement.name]) == Version(floor), requirement.name
    out = run(python.parent / "otel-reqid-logging", "demo", "--spans-file", "s.jsonl", cwd=tmp_path)
    assert "== Looking up" in out
    assert re.search(r"^trace [0-9a-f]{32} ", out, flags=re.MULTILINE), out
