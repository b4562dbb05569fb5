#!/usr/bin/env python3
"""Set up a development environment in ./.venv, then run the demo, the tests or the benchmark.

    python3 dev.py demo     # the demo: concurrent requests, their log lines, a trace lookup
    python3 dev.py test     # ruff, mypy --strict and the whole test suite
    python3 dev.py bench    # the benchmark

`test` and `bench` need wrk, the load generator, and valgrind, which counts instructions;
as root they install them with apt-get.

Only Python 3 is needed. Where Debian's python3 lacks ensurepip (no python3-venv package),
pip is fetched from PyPI into the virtual environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
PYTHON = BIN / "python"
STAMP = VENV / ".installed-from"


def run(*command: str | Path) -> None:
    """Run a command; stop with its exit code if it fails."""
    print("+", " ".join(str(part) for part in command), flush=True)
    result = subprocess.run([str(part) for part in command], cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_pip() -> None:
    """Give the venv pip, from PyPI when the interpreter came without ensurepip."""
    if (BIN / "pip").exists():
        return
    with urllib.request.urlopen("https://pypi.org/pypi/pip/json", timeout=60) as response:
        release = json.load(response)
    wheel = next(f for f in release["urls"] if f["filename"].endswith(".whl"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / wheel["filename"]
        urllib.request.urlretrieve(wheel["url"], path)
        run(PYTHON, f"{path}/pip", "install", "--quiet", str(path))


def ensure_venv() -> None:
    """Create ./.venv and install the project with its dev tools, once per pyproject change."""
    if not PYTHON.exists():
        try:
            venv.create(VENV, with_pip=True)
        except subprocess.CalledProcessError:
            venv.create(VENV, with_pip=False, clear=True)
        ensure_pip()
    wanted = (ROOT / "pyproject.toml").read_text()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip", "uv")
    run(BIN / "uv", "pip", "install", "--quiet", "--python", PYTHON, "-e", ".[dev]")
    STAMP.write_text(wanted)


def ensure_bench_tools() -> None:
    """Install wrk (the load generator) and valgrind (the instruction counter) if missing."""
    missing = [
        package
        for package, program in (("wrk", "wrk"), ("valgrind", "callgrind_control"))
        if not shutil.which(program)
    ]
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", *missing)
        return
    sys.exit(
        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} needed by the "
        "benchmark and its test: "
        f"sudo apt-get install {' '.join(missing)}"
    )


def main() -> None:
    """Dispatch the sub-command."""
    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    if command not in {"demo", "test", "bench"}:
        print(__doc__)
        sys.exit(0 if command in {"help", "-h", "--help"} else 2)
    ensure_venv()
    if command in {"test", "bench"}:
        ensure_bench_tools()
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    extra = sys.argv[2:]
    if command == "demo":
        run(BIN / "otel-reqid-logging", "demo", *extra)
    elif command == "test":
        run(BIN / "ruff", "check", ".")
        run(BIN / "ruff", "format", "--check", ".")
        run(BIN / "mypy")
        run(PYTHON, "-m", "pytest", *extra)
    else:
        run(PYTHON, "-m", "bench", *extra)


if __name__ == "__main__":
    main()
