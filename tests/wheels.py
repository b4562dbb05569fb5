"""The built wheel and fresh virtual environments to install it into, for tests of the install.

A pytest plugin (listed in ``tests/conftest.py``): the session fixture ``wheel`` builds the
sdist and, from it, the wheel, once per test session.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.subprocess_app import ROOT

__all__ = [
    "CONSTRAINTS",
    "clean_env",
    "install",
    "make_venv",
    "requirements",
    "run",
    "uv",
    "versions",
    "wheel",
]

CONSTRAINTS = ROOT / "dev-constraints.txt"


def uv() -> str:
    """The uv beside this interpreter (the dev environment's), or on PATH."""
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        pytest.fail("uv is needed to build and install the wheel: run `python3 dev.py test`")
    return found


def clean_env() -> dict[str, str]:
    """This environment without OTEL_* settings or an active virtual environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VIRTUAL_ENV"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(*command: str | Path, cwd: Path | None = None) -> str:
    """Run a command to completion in a clean environment; return its output."""
    completed = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=cwd,
        env=clean_env(),
    )
    assert completed.returncode == 0, f"{command}:\n{completed.stdout}\n{completed.stderr}"
    return completed.stdout


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from the sdist as a release would be."""
    out = tmp_path_factory.mktemp("dist")
    run(uv(), "build", "--quiet", "--out-dir", out, ROOT)
    (built,) = out.glob("*.whl")
    return built


def requirements(wheel: Path, *, extra: str | None = None) -> list[str]:
    """The wheel's Requires-Dist lines for the core, or those one extra adds of its own."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    found = []
    for line in re.findall(r"^Requires-Dist: (.+)$", metadata, flags=re.MULTILINE):
        requirement = Requirement(line)
        if requirement.name == "otel-reqid-logging":  # an extra that includes another
            continue
        if extra is None:
            wanted = requirement.marker is None
        else:
            wanted = requirement.marker is not None and requirement.marker.evaluate(
                {"extra": extra}
            )
        if wanted:
            requirement.marker = None
            found.append(str(requirement))
    return found


def make_venv(path: Path) -> Path:
    """Create a fresh virtual environment at ``path``; return its interpreter."""
    run(uv(), "venv", "--quiet", "--python", sys.executable, path)
    return path / "bin" / "python"


def install(python: Path, *requirements: str | Path, lowest: bool = False) -> None:
    """Install into ``python``'s environment: pinned by the dev constraints, or at the lowest."""
    args: list[str | Path] = [uv(), "pip", "install", "--quiet", "--python", python]
    if lowest:
        args += ["--resolution", "lowest-direct"]
    else:
        args += ["--constraint", CONSTRAINTS]
    run(*args, *requirements)


def versions(python: Path) -> dict[str, str]:
    """Installed distributions of ``python``'s environment, by normalized name."""
    frozen = run(uv(), "pip", "freeze", "--python", python)
    pins = (line.split("==") for line in frozen.splitlines() if "==" in line)
    return {name.lower().replace("_", "-"): version for name, version in pins}
