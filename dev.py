#!/usr/bin/env python3
"""Set up a development environment in ./.venv, then run the demo, the tests or the benchmark.

    python3 dev.py demo             # concurrent requests, their log lines, a trace lookup
    python3 dev.py test             # ruff, mypy --strict and the whole test suite (what CI runs)
    python3 dev.py bench            # the benchmark; needs wrk (installed with apt-get as root)
    python3 dev.py lock             # re-pin the development tools in dev-constraints.txt
    python3 dev.py lock --upgrade   # the same, moving every pin to its newest release

Needs Python 3.10 or newer, and one way to install packages: the interpreter's ensurepip,
or else pip or uv on the machine. Packages come from wherever pip is configured to fetch
them (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, pip.conf) or uv (UV_* settings).
Every install is held to the pins in dev-constraints.txt.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
PYTHON = BIN / "python"
UV = BIN / "uv"
CONSTRAINTS = ROOT / "dev-constraints.txt"
# Written only once the install succeeded: a .venv without it is half-made.
STAMP = VENV / ".dev-installed"
MINIMUM_PYTHON = (3, 10)
# What the benchmark and its smoke test need beyond Python: Debian package -> its program.
# Package -> the program it puts on PATH: wrk drives the load, valgrind counts instructions.
BENCH_TOOLS = {"wrk": "wrk", "valgrind": "callgrind_control"}
LOCK_COMMAND = (
    "pip",
    "compile",
    "pyproject.toml",
    "--extra",
    "dev",
    "--universal",
    "--python-version",
    "3.10",
    "--quiet",
    "--custom-compile-command",
    "python3 dev.py lock",
    "--output-file",
    "dev-constraints.txt",
)


def check_python(version: tuple[int, int, int] = sys.version_info[:3]) -> None:
    """Stop with a clear message when this interpreter is too old for the project."""
    if version[:2] < MINIMUM_PYTHON:
        wanted = ".".join(map(str, MINIMUM_PYTHON))
        found = ".".join(map(str, version[:3]))
        sys.exit(
            f"dev.py needs Python {wanted} or newer; {sys.executable} is Python {found}.\n"
            f"Run it with a newer interpreter, e.g.: python3.12 dev.py test"
        )


def run(*command: str | Path, env: Mapping[str, str] | None = None) -> None:
    """Run a command; stop with its exit code if it fails."""
    print("+", " ".join(str(part) for part in command), flush=True)
    result = subprocess.run([str(part) for part in command], cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def _works(*command: str | Path) -> bool:
    try:
        completed = subprocess.run(
            [str(part) for part in command], capture_output=True, check=False, timeout=120
        )
    except OSError:
        return False
    return completed.returncode == 0


@functools.cache
def _pip_settings(python: str) -> dict[str, str]:
    """The index settings pip would use: its environment variables, else its config files."""
    found: dict[str, str] = {}
    if _works(python, "-m", "pip", "--version"):
        listing = subprocess.run(
            [str(python), "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in listing.splitlines():
            key, _, value = line.partition("=")
            found[key.rsplit(".", 1)[-1]] = value.strip().strip("'\"")
    for key in ("index-url", "extra-index-url", "find-links", "cert"):
        variable = "PIP_" + key.upper().replace("-", "_")
        if os.environ.get(variable):
            found[key] = os.environ[variable]
    return found


def uv_environment() -> dict[str, str]:
    """The environment for uv: the user's uv settings, else those of their pip."""
    env = dict(os.environ)
    if any(env.get(name) for name in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX")):
        return env
    pip = _pip_settings(sys.executable)
    if pip.get("index-url"):
        env["UV_INDEX_URL"] = pip["index-url"]
    if pip.get("extra-index-url") and not env.get("UV_EXTRA_INDEX_URL"):
        env["UV_EXTRA_INDEX_URL"] = pip["extra-index-url"]
    if pip.get("find-links") and not env.get("UV_FIND_LINKS"):
        env["UV_FIND_LINKS"] = ",".join(pip["find-links"].split())
    if pip.get("cert") and not env.get("SSL_CERT_FILE"):
        env["SSL_CERT_FILE"] = pip["cert"]
    return env


def _create_venv() -> None:
    """Create ./.venv, with pip when this interpreter can give it one."""
    print(f"+ creating {VENV} with {sys.executable}", flush=True)
    try:
        venv.create(VENV, with_pip=True, clear=True)
    except (subprocess.CalledProcessError, OSError):
        # Debian's python3 without the python3-venv package has no usable ensurepip.
        print("  (no ensurepip here: a venv without pip, and uv from elsewhere)", flush=True)
        venv.create(VENV, with_pip=False, clear=True)


def _install_uv() -> None:
    """Put the pinned uv into ./.venv with whichever installer this machine has."""
    pinned = ("--constraint", str(CONSTRAINTS), "uv")
    env = uv_environment()
    machine_uv = shutil.which("uv")
    if _works(PYTHON, "-m", "pip", "--version"):
        run(PYTHON, "-m", "pip", "install", "--quiet", *pinned)
    elif machine_uv:
        run(machine_uv, "pip", "install", "--quiet", "--python", PYTHON, *pinned, env=env)
    elif _works(sys.executable, "-m", "pip", "--version"):
        run(sys.executable, "-m", "pip", "--python", PYTHON, "install", "--quiet", *pinned)
    else:
        shutil.rmtree(VENV, ignore_errors=True)
        sys.exit(
            f"dev.py cannot install packages: {sys.executable} has no ensurepip, and neither "
            "pip nor uv is on this machine.\nInstall one of them, e.g. "
            "`sudo apt-get install python3-venv` (Debian, Ubuntu) or `python3 -m pip "
            "install --user uv`, then run dev.py again."
        )


def ensure_uv() -> Path:
    """Make sure ./.venv exists with a working interpreter and uv; repair it when broken."""
    if VENV.exists() and not _works(PYTHON, "-c", "pass"):
        print(f"+ {VENV} is broken (its python does not run): making it again", flush=True)
        shutil.rmtree(VENV)
    if not VENV.exists():
        _create_venv()
    if not _works(UV, "--version"):
        _install_uv()
    return UV


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", CONSTRAINTS):
        digest.update(path.read_bytes())
    digest.update(f"{sys.version}\n{sys.executable}".encode())
    return digest.hexdigest()


def ensure_venv() -> None:
    """Create ./.venv with the project (editable) and its pinned dev tools; keep it current."""
    wanted = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == wanted and _works(PYTHON, "-c", "pass"):
        return
    if VENV.exists() and not STAMP.exists():
        # A first run that failed half-way, or a venv made some other way: start clean.
        print(f"+ {VENV} was never completed: making it again", flush=True)
        shutil.rmtree(VENV)
    STAMP.unlink(missing_ok=True)
    uv = ensure_uv()
    run(
        uv, "pip", "install", "--quiet", "--python", PYTHON,
        "--constraint", CONSTRAINTS, "-e", ".[dev]",
        env=uv_environment(),
    )  # fmt: skip
    STAMP.write_text(wanted)


def lock(extra: list[str]) -> None:
    """Re-pin every development dependency into dev-constraints.txt (keeping current pins)."""
    uv = ensure_uv()
    run(uv, *LOCK_COMMAND, *extra, env=uv_environment())
    print(f"{CONSTRAINTS.name} updated; the next dev.py run installs from it.")


def missing_bench_tools() -> list[str]:
    """The packages of BENCH_TOOLS whose program is not on PATH."""
    return [package for package, program in BENCH_TOOLS.items() if not shutil.which(program)]


def bench_tools_hint(missing: list[str]) -> str:
    """How to install ``missing``, for a message."""
    names = " ".join(missing)
    return f"sudo apt-get install {names} (Debian, Ubuntu), or brew install {names} (macOS)"


def ensure_bench_tools() -> None:
    """Install what the benchmark needs with apt-get as root; else say how, and stop."""
    missing = missing_bench_tools()
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", *missing)
        return
    sys.exit(f"the benchmark needs {', '.join(missing)}: {bench_tools_hint(missing)}")


def main() -> None:
    """Dispatch the sub-command."""
    check_python()
    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    extra = sys.argv[2:]
    if command not in {"demo", "test", "bench", "lock"}:
        print(__doc__)
        sys.exit(0 if command in {"help", "-h", "--help"} else 2)
    if command == "lock":
        lock(extra)
        return
    ensure_venv()
    os.environ.update(uv_environment())  # the test suite installs its tools with uv too
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    if command == "demo":
        run(BIN / "otel-reqid-logging", "demo", *extra)
    elif command == "test":
        missing = missing_bench_tools()
        if missing:
            print(
                f"note: {', '.join(missing)} not installed, so the benchmark's smoke test will "
                f"fail (every other test runs). To install: {bench_tools_hint(missing)}",
                flush=True,
            )
        run(BIN / "ruff", "check", ".")
        run(BIN / "ruff", "format", "--check", ".")
        run(BIN / "mypy")
        run(PYTHON, "-m", "pytest", *extra)
    else:
        ensure_bench_tools()
        run(PYTHON, "-m", "bench", *extra)


if __name__ == "__main__":
    main()
