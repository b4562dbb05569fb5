"""What the package needs: the core runs on the OpenTelemetry API alone; dev tools are pinned."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.subprocess_app import ROOT
from tests.wheels import run, uv

#: Modules that make up the core: the plain install (no extras) imports and runs them.
CORE_MODULES = [
    "otel_reqid_logging",
    "otel_reqid_logging.access_log",
    "otel_reqid_logging.cli",
    "otel_reqid_logging.compat",
    "otel_reqid_logging.export",
    "otel_reqid_logging.instrumentor",
    "otel_reqid_logging.lookup",
    "otel_reqid_logging.lookup.file",
    "otel_reqid_logging.lookup.jaeger",
    "otel_reqid_logging.lookup.phoenix",
    "otel_reqid_logging.middleware",
    "otel_reqid_logging.records",
    "otel_reqid_logging.sentry",
    "otel_reqid_logging.threads",
]

# Makes `import opentelemetry.sdk...` fail in the child, as in an install without the SDK.
_BLOCK_SDK = """
import importlib.abc, sys
class _NoSdk(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoSdk())
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_SDK + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_core_modules_import_without_the_sdk() -> None:
    """No core module imports the SDK or an exporter when it is imported."""
    result = _run(
        "import importlib\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("code", "feature"),
    [
        ("from otel_reqid_logging.export import configure_tracing\nconfigure_tracing()", "sdk"),
        ("import otel_reqid_logging.file_exporter", "sdk"),
    ],
)
def test_sdk_features_name_their_extra(code: str, feature: str) -> None:
    """Without the SDK, what needs it fails with one line that names the extra to install."""
    result = _run(code)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("otel_reqid_logging._extras.MissingExtraError: "), result.stderr
    assert f"pip install 'otel-reqid-logging[{feature}]'" in last


def test_demo_without_the_sdk_says_one_line() -> None:
    """`otel-reqid-logging demo` without the SDK prints one line naming the extra, exit 2."""
    result = _run("from otel_reqid_logging.cli import main\nsys.exit(main(['demo']))")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("otel-reqid-logging demo: The local span file exporter needs the sdk")
    assert line.endswith("pip install 'otel-reqid-logging[sdk]'")


def _requirements_of(extra: str, seen: set[str]) -> set[str]:
    """Names an extra needs, following the extras of this package it includes."""
    names: set[str] = set()
    for line in metadata.requires("otel-reqid-logging") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or not marker.evaluate({"extra": extra}):
            continue
        if canonicalize_name(requirement.name) == "otel-reqid-logging":
            for included in requirement.extras - seen:
                seen.add(included)
                names |= _requirements_of(included, seen)
        else:
            names.add(canonicalize_name(requirement.name))
    return names


def test_constraints_pin_every_dev_requirement() -> None:
    """dev-constraints.txt pins all the dev extra needs: else `python3 dev.py lock` is due."""
    pinned = {
        canonicalize_name(line.split("==")[0])
        for line in (ROOT / "dev-constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }
    core = {
        canonicalize_name(Requirement(line).name)
        for line in metadata.requires("otel-reqid-logging") or []
        if Requirement(line).marker is None
    }
    missing = (_requirements_of("dev", {"dev"}) | core) - pinned
    assert not missing, (
        f"not pinned in dev-constraints.txt: {sorted(missing)}; run `python3 dev.py lock`"
    )


def test_the_lowest_declared_setuptools_builds_the_wheel(tmp_path: Path) -> None:
    """`build-system.requires` names a setuptools that reads `license = "MIT"` (PEP 639
    expressions came with 77; 76 refuses the table): the floor's own release series
    builds the sdist and the wheel, with the license expression in the metadata."""
    # Read without tomllib, which Python 3.10 lacks: the table's one line.
    requires = re.search(r'^requires = \["([^"]+)"\]$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert requires is not None
    requirement = Requirement(requires[1])
    assert canonicalize_name(requirement.name) == "setuptools"
    (lowest,) = (spec.version for spec in requirement.specifier if spec.operator == ">=")
    major = int(lowest.split(".")[0])
    constraint = tmp_path / "build-constraints.txt"
    constraint.write_text(f"setuptools>={lowest},<{major + 1}\n")
    out = tmp_path / "dist"

    run(uv(), "build", "--quiet", "--build-constraint", constraint, "--out-dir", out, ROOT)

    (built,) = out.glob("*.whl")
    assert len(list(out.glob("*.tar.gz"))) == 1
    with zipfile.ZipFile(built) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        assert "License-Expression: MIT" in archive.read(name).decode().splitlines()
