"""Run gunicorn as a subprocess on a free loopback port, with its output in files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.subprocess_app import BIN, ROOT, free_port

__all__ = ["Gunicorn", "every_worker_answers", "running_gunicorn", "workers_of"]

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Gunicorn:
    """A running gunicorn master: where it serves, its pid, and where its output goes."""

    url: str
    pid: int
    stdout: Path
    stderr: Path

    def output(self) -> str:
        """Everything it wrote so far, stdout then stderr."""
        return self.stdout.read_text() + self.stderr.read_text()


def workers_of(pid: int) -> set[int]:
    """The pids of a process's children (gunicorn's workers)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(child) for child in text.split()}


async def every_worker_answers(url: str, path: str, *, workers: int) -> list[dict[str, Any]]:
    """POST `path` in batches until each of the workers has answered one; return the answers.

    gunicorn's workers import the app one after another, and the first one ready takes
    every connection that comes meanwhile. Each answer is the response's JSON with its
    X-Request-ID as ``request_id``.
    """
    answers: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> dict[str, Any]:
            async with session.post(url + path) as response:
                assert response.status == 200, await response.text()
                body: dict[str, Any] = await response.json()
                return {**body, "request_id": response.headers["X-Request-ID"]}

        for _ in range(100):
            answers += await asyncio.gather(*(one() for _ in range(10)))
            if len({answer["pid"] for answer in answers}) == workers:
                return answers
            await asyncio.sleep(0.1)
    raise AssertionError(f"not every worker answered: {answers}")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running_gunicorn(
    command: Sequence[str], env: Mapping[str, str], *, workdir: Path, workers: int
) -> Iterator[Gunicorn]:
    """Start ``command`` (gunicorn's words, ``-b`` added) and yield once all workers serve.

    Stops it with SIGTERM, gunicorn's graceful shutdown, so workers flush their spans.
    """
    port = free_port()
    stdout, stderr = workdir / f"gunicorn-{port}.out", workdir / f"gunicorn-{port}.err"
    environ = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    environ["PATH"] = f"{BIN}{os.pathsep}{environ.get('PATH', '')}"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            # gunicorn's control socket defaults to one path in $HOME, which
            # concurrent test runs would share.
            [*command, "-b", f"127.0.0.1:{port}", "--no-control-socket"],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=err,
        )
    server = Gunicorn(url=f"http://127.0.0.1:{port}", pid=process.pid, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not (_listening(port) and len(workers_of(process.pid)) == workers):
            if process.poll() is not None:
                raise AssertionError(
                    f"gunicorn exited with {process.returncode}:\n{server.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"gunicorn not serving after {_START_TIMEOUT_S} s:\n{server.output()}"
                )
            time.sleep(0.1)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
