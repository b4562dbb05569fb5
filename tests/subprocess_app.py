"""Run an example app as a separate process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RunningApp", "free_port", "run_app_process"]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningApp:
    """A started app: its base URL, and its output once it has stopped."""

    url: str
    output: list[str] = field(default_factory=list)


def _wait_for_port(port: int, process: subprocess.Popen[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"app exited early with {process.returncode}:\n{out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"app did not listen on port {port} in time")


@contextmanager
def run_app_process(
    command: Sequence[str], env: Mapping[str, str], *, startup_timeout: float = 30.0
) -> Iterator[RunningApp]:
    """Start ``command`` with PORT set, yield once it listens, then stop it with SIGINT.

    ``output`` holds the process's combined stdout and stderr lines after the block.
    """
    port = free_port()
    environ = {**os.environ, **env, "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    environ["PATH"] = f"{BIN}{os.pathsep}{environ.get('PATH', '')}"
    process = subprocess.Popen(
        list(command),
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    app = RunningApp(url=f"http://127.0.0.1:{port}")
    try:
        _wait_for_port(port, process, time.monotonic() + startup_timeout)
        yield app
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            out, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        app.output.extend(out.splitlines())
