"""Instructions per request and per log record, counted by valgrind's callgrind.

Requests per second on a shared machine move by about ten per cent from one round to
the next; the number of instructions a request costs does not. Each server runs under
callgrind; after a warm-up its counters are zeroed (``callgrind_control --zero``), a
client outside valgrind sends exactly N requests on one keep-alive connection, the
counters are dumped (``callgrind_control --dump``) and the total is divided by N. Every
thread of the server is counted, so the span processor's worker is part of the cost.

The record factories are counted the same way, in one process under callgrind that
makes N records per factory and place on command (see ``bench.record_counts``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .apps import PATH, ServerProcess

__all__ = [
    "RecordCount",
    "ServerCount",
    "ValgrindMissingError",
    "count_pieces",
    "count_records",
    "count_server",
    "find_valgrind",
]

INSTALL_HINT = "apt-get update && apt-get install valgrind"
# The same string hashes in every run, so dict and set probing repeat exactly.
_ENVIRONMENT = {"PYTHONHASHSEED": "0"}
_START_TIMEOUT_S = 600.0
_DUMP_TIMEOUT_S = 120.0
_SUMMARY = re.compile(rb"^summary:\s+(\d+)", re.MULTILINE)


class ValgrindMissingError(RuntimeError):
    """valgrind (with callgrind_control) is not installed."""


@dataclass(frozen=True)
class ServerCount:
    """What callgrind counted for one configuration."""

    configuration: str
    requests: int
    instructions: int
    non_2xx: int
    log_lines: int

    @property
    def instructions_per_request(self) -> float:
        """Instructions the server ran per request (all threads)."""
        return self.instructions / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class RecordCount:
    """Instructions per ``logger.info`` call for one factory in one place."""

    factory: str
    place: str
    records: int
    instructions_per_record: float


def find_valgrind() -> tuple[str, str]:
    """Return the paths of ``valgrind`` and ``callgrind_control``, or explain the install."""
    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if valgrind is None or control is None:
        raise ValgrindMissingError(
            "valgrind, which counts the benchmark's instructions, is not installed: "
            f"run `{INSTALL_HINT}` (Debian/Ubuntu) and try again"
        )
    return valgrind, control


class _Callgrind:
    """Callgrind's command line and its control: zero and dump a running process."""

    def __init__(self, folder: Path) -> None:
        self._valgrind, self._control = find_valgrind()
        self._folder = folder

    def wrapper(self) -> list[str]:
        """The command that runs a program under callgrind, profiles written to the folder."""
        return [
            self._valgrind,
            "--tool=callgrind",
            "--quiet",
            f"--callgrind-out-file={self._folder}/callgrind.out.%p",
        ]

    def _command(self, option: str, pid: int) -> None:
        completed = subprocess.run(  # noqa: S603  (callgrind_control from PATH)
            [self._control, option, str(pid)],
            capture_output=True,
            text=True,
            check=False,
            timeout=_DUMP_TIMEOUT_S,
        )
        if completed.returncode != 0 or "OK" not in completed.stdout:
            raise RuntimeError(
                f"callgrind_control {option} {pid} failed: "
                f"{completed.stdout.strip()} {completed.stderr.strip()}"
            )

    def zero(self, pid: int) -> None:
        """Set the process's counters to zero."""
        self._command("--zero", pid)

    def dump(self, pid: int) -> tuple[int, Path]:
        """Dump the counters since the last zero; return the instructions and the profile."""
        before = set(self._folder.glob(f"callgrind.out.{pid}.*"))
        self._command("--dump", pid)
        deadline = time.monotonic() + _DUMP_TIMEOUT_S
        while time.monotonic() < deadline:
            for path in set(self._folder.glob(f"callgrind.out.{pid}.*")) - before:
                match = _SUMMARY.search(path.read_bytes())
                if match is not None:
                    return int(match[1]), path
            time.sleep(0.05)
        raise RuntimeError(f"callgrind wrote no profile for process {pid}")


class _KeepAliveClient:
    """An HTTP/1.1 client on one keep-alive connection, one request in flight at a time."""

    def __init__(self, port: int) -> None:
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=_DUMP_TIMEOUT_S)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._request = (
            f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "User-Agent: bench-callgrind\r\nAccept: */*\r\n\r\n"
        ).encode()
        self._buffer = b""

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed the connection")
            self._buffer += chunk
        head, self._buffer = self._buffer.split(marker, 1)
        return head

    def _read_exactly(self, size: int) -> None:
        while len(self._buffer) < size:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed the connection")
            self._buffer += chunk
        self._buffer = self._buffer[size:]

    def get(self) -> int:
        """Send one request, read its whole response and return its status."""
        self._socket.sendall(self._request)
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *header_lines = head.split("\r\n")
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        self._read_exactly(length)
        return int(status_line.split()[1])

    def send(self, requests: int) -> int:
        """Send ``requests`` requests; return how many were not answered with 2xx."""
        return sum(not 200 <= self.get() < 300 for _ in range(requests))

    def close(self) -> None:
        """Close the connection."""
        self._socket.close()


@contextmanager
def _folder(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as name:
        yield Path(name)


def count_server(
    configuration: str,
    *,
    requests: int,
    warmup: int,
    core: int,
    profiles: Path | None = None,
) -> ServerCount:
    """Count the instructions ``requests`` requests cost one server configuration.

    ``profiles`` keeps callgrind's files there (for ``callgrind_annotate``).
    """
    with _folder(profiles) as folder:
        callgrind = _Callgrind(folder)
        log_file = folder / f"{configuration}.log"
        with ServerProcess(
            configuration,
            log_file,
            core,
            wrapper=callgrind.wrapper(),
            environment=_ENVIRONMENT,
            start_timeout_s=_START_TIMEOUT_S,
        ) as server:
            client = _KeepAliveClient(server.port)
            try:
                warm_failures = client.send(warmup)
                server.take_log_lines()
                callgrind.zero(server.pid)
                failures = client.send(requests)
                instructions, profile = callgrind.dump(server.pid)
            finally:
                client.close()
            log_lines = server.take_log_lines()
        if profiles is not None:
            profile.rename(folder / f"callgrind.out.{configuration}")
    return ServerCount(
        configuration=configuration,
        requests=requests,
        instructions=instructions,
        non_2xx=failures + warm_failures,
        log_lines=log_lines,
    )


def _ask(process: subprocess.Popen[str], command: str, answer: str | None) -> str:
    stdin: IO[str] | None = process.stdin
    stdout: IO[str] | None = process.stdout
    assert stdin is not None
    assert stdout is not None
    stdin.write(command + "\n")
    stdin.flush()
    line = stdout.readline().rstrip("\n")
    if answer is not None and line != answer:
        raise RuntimeError(f"counter answered {line!r} to {command!r}, not {answer!r}")
    return line


def _count_cases(
    module: str,
    cases: Sequence[str] | None,
    *,
    number: int,
    nothing: str,
    profiles: Path | None,
) -> dict[str, float]:
    """Drive ``module`` under callgrind: instructions per call of each case.

    The module answers ``prepare CASE`` with ``ready`` and ``run`` with ``done`` (see
    ``bench.record_counts``); ``cases`` None asks it for its list (``list``). The
    case ``nothing`` runs the protocol alone; its count is subtracted from the others.
    """
    with _folder(profiles) as folder:
        callgrind = _Callgrind(folder)
        process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
            [*callgrind.wrapper(), sys.executable, "-m", module, str(number)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **_ENVIRONMENT},
        )
        try:
            if cases is None:
                cases = _ask(process, "list", None).split("\t")
            measured: dict[str, int] = {}
            for case in [nothing, *cases]:
                _ask(process, f"prepare {case}", "ready")
                callgrind.zero(process.pid)
                _ask(process, "run", "done")
                measured[case], profile = callgrind.dump(process.pid)
                if profiles is not None:
                    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", case)
                    profile.rename(folder / f"callgrind.out.{module}.{label}")
            _ask(process, "quit", "bye")
            process.wait(_DUMP_TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return {case: (measured[case] - measured[nothing]) / number for case in cases}


def count_records(
    cases: Sequence[tuple[str, str]], *, records: int, profiles: Path | None = None
) -> list[RecordCount]:
    """Count the instructions per record of each (factory, place) case."""
    counted = _count_cases(
        "bench.record_counts",
        [f"{factory} {place}" for factory, place in cases],
        number=records,
        nothing="none outside",
        profiles=profiles,
    )
    return [
        RecordCount(
            factory=factory,
            place=place,
            records=records,
            instructions_per_record=counted[f"{factory} {place}"],
        )
        for factory, place in cases
    ]


def count_pieces(*, calls: int, profiles: Path | None = None) -> dict[str, float]:
    """Count the instructions per call of each piece of the hot path (``bench.pieces``)."""
    return _count_cases("bench.pieces", None, number=calls, nothing="none", profiles=profiles)
