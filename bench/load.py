"""The load generator: one ``wrk`` run against one server, and what it counted."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LoadResult", "WrkMissingError", "find_wrk", "run_wrk"]

_MARKER = "BENCH_WRK_JSON "

# wrk calls done() once at the end; it prints the summary as one JSON line, so nothing
# depends on the layout of wrk's human-readable report.
_DONE_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "status_errors": %d, "connect_errors": %d, '
      .. '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d}\\n',
    "MARKER", summary.requests, summary.duration, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
""".replace("MARKER", _MARKER)


class WrkMissingError(RuntimeError):
    """wrk is not installed."""


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run counted."""

    requests: int
    duration_s: float
    #: Responses with a status of 400 or more (wrk counts those, not 3xx).
    non_2xx: int
    #: Connect, read and write errors and timeouts.
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def requests_per_second(self) -> float:
        """Completed requests per second of the run."""
        return self.requests / self.duration_s if self.duration_s else 0.0


def find_wrk() -> str:
    """Return the path of ``wrk``, or explain how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissingError(
            "wrk, the load generator of the benchmark, is not installed: "
            "run `apt-get update && apt-get install wrk` (Debian/Ubuntu) and try again"
        )
    return path


def parse_done_line(output: str) -> LoadResult:
    """Read the summary line that the done() script printed among wrk's output."""
    for line in output.splitlines():
        if line.startswith(_MARKER):
            data = json.loads(line[len(_MARKER) :])
            break
    else:
        raise RuntimeError(f"wrk printed no summary; its output was:\n{output}")
    return LoadResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        non_2xx=data["status_errors"],
        socket_errors=sum(
            data[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        p50_ms=data["p50_us"] / 1e3,
        p99_ms=data["p99_us"] / 1e3,
    )


def run_wrk(url: str, *, duration_s: int, connections: int) -> LoadResult:
    """Load ``url`` with one wrk thread for ``duration_s`` whole seconds.

    wrk runs on the CPUs the calling process is allowed (the benchmark pins itself
    away from the server's core before it starts wrk).
    """
    wrk = find_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        script = Path(folder) / "done.lua"
        script.write_text(_DONE_SCRIPT)
        completed = subprocess.run(  # noqa: S603  (wrk from PATH, arguments built here)
            [
                wrk,
                "--threads=1",
                f"--connections={connections}",
                f"--duration={duration_s}s",
                "--timeout=10s",
                f"--script={script}",
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=duration_s + 60,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    return parse_done_line(completed.stdout)
