#!/usr/bin/env python3
"""Set up a development environment in ./.venv, then run the demo, the tests or the benchmark.

    python3 dev.py demo                  # concurrent requests, their log lines, a trace lookup
    python3 dev.py test                  # ruff, mypy --strict and the whole test suite
    python3 dev.py test --python 3.13    # the whole suite on another Python, in ./.venv-3.13
    python3 dev.py matrix                # the suite on every other Python the project declares
    python3 dev.py bench                 # the benchmark; needs wrk and valgrind
    python3 dev.py bench --check         # the benchmark's own checks: short runs of it
    python3 dev.py bench --python 3.13   # the benchmark on another Python
    python3 dev.py lock                  # re-pin the development tools in dev-constraints.txt
    python3 dev.py lock --upgrade        # the same, moving every pin to its newest release

Needs Python 3.10 or newer, and one way to install packages: the interpreter's ensurepip,
or else pip or uv on the machine. Packages come from wherever pip is configured to fetch
them (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, pip.conf) or uv (UV_* settings).
Every install, on every interpreter, is held to the pins in dev-constraints.txt.

`test` needs nothing but Python: the checks that need wrk and valgrind are the benchmark's,
run by `bench --check`, which installs the two with apt-get as root or says how to. CI
(.ci/run) runs `test`, then `matrix`, then `bench --check`.

The other interpreters are the versions the Python classifiers of pyproject.toml declare.
`--python X.Y` finds one as pythonX.Y on PATH, in pyenv (PYENV_ROOT, `pyenv root`, or
~/.pyenv: versions/X.Y.*), or as /usr/local/bin or /usr/bin/pythonX.Y; a path to an
interpreter works too. Each gets its own ./.venv-X.Y (the primary interpreter, the one
running dev.py, keeps ./.venv). `matrix` leaves out the tests marked external_tool (see
pyproject.toml): they test Jaeger, the OpenTelemetry Collector and other programs, which
run the same whatever Python drives them, and the primary interpreter runs them.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
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
# What the benchmark and its checks need beyond Python: Debian package -> the program it
# puts on PATH. wrk drives the load, valgrind counts instructions.
BENCH_TOOLS = {"wrk": "wrk", "valgrind": "callgrind_control"}
# The benchmark's own checks: short runs of it, outside the test suite (norecursedirs).
BENCH_CHECKS = "tests/bench_checks"
# What the matrix leaves out on the other interpreters (the marker is in pyproject.toml).
MATRIX_MARKERS = "not external_tool"
_CLASSIFIER = re.compile(r'"Programming Language :: Python :: (3\.\d+)"')
_VERSION = re.compile(r"3\.\d+")
# pytest's exit code when it collected nothing: never a pass.
_NO_TESTS = 5
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


def missing_bench_tools(packages: list[str] | None = None) -> list[str]:
    """The packages of BENCH_TOOLS (or of ``packages``) whose program is not on PATH."""
    wanted = list(BENCH_TOOLS) if packages is None else packages
    return [package for package in wanted if not shutil.which(BENCH_TOOLS[package])]


def bench_tools_hint(missing: list[str]) -> str:
    """How to install ``missing``, for a message."""
    names = " ".join(missing)
    return f"sudo apt-get install {names} (Debian, Ubuntu), or brew install {names} (macOS)"


def ensure_bench_tools(packages: list[str]) -> None:
    """Install what the benchmark needs with apt-get as root; else say how, and stop."""
    missing = missing_bench_tools(packages)
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        wait = ("-o", "DPkg::Lock::Timeout=600")  # another apt-get may hold the lock
        run("apt-get", *wait, "update", "-qq")
        run("apt-get", *wait, "install", "-y", "-qq", *missing)
        return
    sys.exit(
        f"the benchmark needs {', '.join(missing)}, not on PATH: {bench_tools_hint(missing)}.\n"
        "(The tests, python3 dev.py test, need neither.)"
    )


def bench_tools_needed(args: list[str]) -> list[str]:
    """The BENCH_TOOLS packages a ``bench`` run with ``args`` uses."""
    if "--check" in args:
        return list(BENCH_TOOLS)
    needed = []
    if not {"--no-wrk", "--records-only"} & set(args):
        needed.append("wrk")
    if "--no-callgrind" not in args:
        needed.append("valgrind")
    return needed


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def this_version() -> str:
    """The major.minor version of the interpreter running dev.py: the primary one."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def declared_versions(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The Python versions the project's classifiers declare, oldest first."""
    found = set(_CLASSIFIER.findall(pyproject.read_text()))
    return sorted(found, key=_version_key)


def _version_of(python: Path) -> str | None:
    """The major.minor version of ``python``, or None when it does not run."""
    try:
        completed = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def _pyenv_root() -> Path | None:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        answer = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        if answer.returncode == 0 and answer.stdout.strip():
            return Path(answer.stdout.strip())
    home = Path.home() / ".pyenv"
    return home if home.is_dir() else None


def python_candidates(version: str) -> list[Path]:
    """Where an interpreter of ``version`` (major.minor) may be, in the order tried."""
    candidates = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        # pyenv's shim is on PATH too, but runs only with PYENV_VERSION set.
        candidates.append(Path(on_path))
    root = _pyenv_root()
    if root is not None:
        pattern = re.compile(rf"{re.escape(version)}\.\d+")
        builds = [p for p in (root / "versions").glob(f"{version}.*") if pattern.fullmatch(p.name)]
        for build in sorted(builds, key=lambda p: _version_key(p.name), reverse=True):
            candidates.append(build / "bin" / "python3")
    candidates += [Path(folder) / f"python{version}" for folder in ("/usr/local/bin", "/usr/bin")]
    return list(dict.fromkeys(candidates))


def find_python(version: str) -> Path | None:
    """The first candidate interpreter that runs and is ``version``, or None."""
    for candidate in python_candidates(version):
        if candidate.exists() and _version_of(candidate) == version:
            return candidate
    return None


def _resolve(wanted: str) -> tuple[str, Path]:
    """Turn ``--python``'s value (X.Y, or an interpreter's path) into (version, interpreter)."""
    if os.sep in wanted:
        interpreter = Path(wanted).absolute()
        version = _version_of(interpreter)
        if version is None:
            sys.exit(f"--python {wanted}: that interpreter does not run")
    elif _VERSION.fullmatch(wanted):
        version = wanted
        found = find_python(version)
        if found is None:
            tried = ", ".join(str(path) for path in python_candidates(version))
            sys.exit(
                f"Python {version} not found (tried: {tried or 'nothing on PATH'}).\n"
                f"Install it, e.g. `pyenv install {version}`, or pass its path: --python PATH"
            )
        interpreter = found
    else:
        sys.exit(f"--python takes a version such as 3.13, or an interpreter's path; not {wanted}")
    if _version_key(version) < MINIMUM_PYTHON:
        sys.exit(f"Python {version} ({interpreter}) is older than the 3.10 this project needs")
    return version, interpreter


def venv_for(version: str) -> Path:
    """The development environment of a Python other than the primary one."""
    return ROOT / f".venv-{version}"


def ensure_other_venv(version: str, interpreter: Path) -> Path:
    """Make ./.venv-X.Y with ``interpreter``: the project (editable) and its pinned dev tools.

    The primary ./.venv's uv builds it, from the same dev-constraints.txt. Returns its python.
    """
    folder = venv_for(version)
    python = folder / "bin" / "python"
    stamp = folder / STAMP.name
    identity = subprocess.run(
        [str(interpreter), "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    wanted = f"{_fingerprint()}\n{interpreter}\n{identity}\nwith pip"
    if stamp.exists() and stamp.read_text() == wanted and _works(python, "-c", "pass"):
        return python
    uv = ensure_uv()
    env = uv_environment()
    # Made by the interpreter's own venv, with pip when its ensurepip can give it, as the
    # primary ./.venv is (the tests of dev.py use the pip of the interpreter they run on).
    print(f"+ creating {folder} with {interpreter}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    made = subprocess.run([str(interpreter), "-m", "venv", str(folder)], check=False)
    if made.returncode != 0:  # no ensurepip (Debian without python3-venv): uv makes it
        run(uv, "venv", "--quiet", "--clear", "--python", interpreter, folder, env=env)
    run(
        uv, "pip", "install", "--quiet", "--python", python,
        "--constraint", CONSTRAINTS, "-e", ".[dev]",
        env=env,
    )  # fmt: skip
    stamp.write_text(wanted)
    return python


def _take_python(extra: list[str]) -> tuple[str | None, list[str]]:
    """Split ``--python X`` (or ``--python=X``) off the arguments."""
    rest: list[str] = []
    wanted: str | None = None
    arguments = iter(extra)
    for argument in arguments:
        if argument == "--python":
            wanted = next(arguments, None)
            if wanted is None:
                sys.exit("--python needs a value: a version such as 3.13, or a path")
        elif argument.startswith("--python="):
            wanted = argument.partition("=")[2]
        else:
            rest.append(argument)
    return wanted, rest


def _environment_for(python: Path) -> dict[str, str]:
    """This process's environment with ``python``'s venv first on PATH, and uv's settings."""
    env = uv_environment()
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    return env


def outcome(code: int) -> str:
    """What a pytest exit code means, in words."""
    if code == 0:
        return "passed"
    if code == _NO_TESTS:
        return "no tests ran (pytest exit 5): a selection that matched nothing"
    return f"failed (pytest exit {code})"


def pytest(python: Path, *args: str) -> int:
    """Run the tests with ``python``; return pytest's exit code (5, no tests, is a failure)."""
    command = [str(python), "-m", "pytest", *args]
    print("+", " ".join(command), flush=True)
    code = subprocess.run(command, cwd=ROOT, env=_environment_for(python), check=False).returncode
    if code == _NO_TESTS:
        print(f"error: {outcome(code)}", file=sys.stderr, flush=True)
    return code


def _primary() -> Path:
    """The primary ./.venv, current; its python."""
    ensure_venv()
    return PYTHON


def _interpreter(wanted: str | None) -> tuple[str, Path]:
    """The (version, venv python) that ``--python`` asks for; the primary one by default."""
    if wanted is None:
        return this_version(), _primary()
    version, interpreter = _resolve(wanted)
    if version == this_version() and interpreter.resolve() == Path(sys.executable).resolve():
        return version, _primary()
    return version, ensure_other_venv(version, interpreter)


def test(extra: list[str]) -> None:
    """ruff, mypy and the suite on the primary Python; only the suite on another one."""
    wanted, args = _take_python(extra)
    version, python = _interpreter(wanted)
    if python == PYTHON:
        run(BIN / "ruff", "check", ".")
        run(BIN / "ruff", "format", "--check", ".")
        run(BIN / "mypy")
    print(f"+ the tests on Python {version}", flush=True)
    code = pytest(python, *args)
    if code != 0:
        sys.exit(code)


def matrix(extra: list[str]) -> None:
    """The suite, less the external_tool tests, on every other declared Python; a summary."""
    declared = declared_versions()
    primary = this_version()
    others = [version for version in declared if version != primary]
    if primary not in declared:
        print(f"note: the primary Python {primary} is not among the declared {declared}")
    results: list[tuple[str, str, int, float]] = []
    missing: list[str] = []
    for version in others:
        interpreter = find_python(version)
        if interpreter is None:
            print(f"error: declared Python {version} not found on this machine", flush=True)
            missing.append(version)
            continue
        python = ensure_other_venv(version, interpreter)
        print(f"+ the tests on Python {version} ({interpreter})", flush=True)
        started = time.monotonic()
        code = pytest(python, "-m", MATRIX_MARKERS, *extra)
        results.append((version, str(interpreter), code, time.monotonic() - started))
    print(f"\nPython matrix (the primary {primary} runs the whole suite in `dev.py test`):")
    for version, path, code, seconds in results:
        print(f"  {version}: {outcome(code)} in {seconds / 60:.1f} min ({path})")
    for version in missing:
        tried = ", ".join(str(path) for path in python_candidates(version))
        print(f"  {version}: NOT TESTED, no interpreter found (tried: {tried})")
    if missing or any(code != 0 for _, _, code, _ in results):
        sys.exit(1)


def bench(extra: list[str]) -> None:
    """The benchmark, or with --check its own checks, on the primary or another Python."""
    wanted, args = _take_python(extra)
    ensure_bench_tools(bench_tools_needed(args))
    version, python = _interpreter(wanted)
    if "--check" in args:
        args.remove("--check")
        print(f"+ the benchmark's checks on Python {version}", flush=True)
        code = pytest(python, BENCH_CHECKS, *args)
        if code != 0:
            sys.exit(code)
        return
    run(python, "-m", "bench", *args, env=_environment_for(python))


def main() -> None:
    """Dispatch the sub-command."""
    check_python()
    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    extra = sys.argv[2:]
    if command not in {"demo", "test", "matrix", "bench", "lock"}:
        print(__doc__)
        sys.exit(0 if command in {"help", "-h", "--help"} else 2)
    if command == "lock":
        lock(extra)
    elif command == "test":
        test(extra)
    elif command == "matrix":
        matrix(extra)
    elif command == "bench":
        bench(extra)
    else:
        ensure_venv()
        run(BIN / "otel-reqid-logging", "demo", *extra, env=_environment_for(PYTHON))


if __name__ == "__main__":
    main()
