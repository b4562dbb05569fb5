"""The lookup command's waterfall as a user sees it: on a real pseudo-terminal, into a
pipe, into an output that is not UTF-8, at a chosen width. Spans come from the SDK's own
OTLP JSON file exporter (the ``sdk`` extra), so these are not among the core tests."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from otel_reqid_logging.lookup._cli import EXIT_FOUND, EXIT_USAGE, run
from tests.test_lookup_file import write_request
from tests.test_lookup_render import ANSI, cells, read_until_exit


@pytest.mark.parametrize("no_color", [False, True])
def test_the_command_colours_on_a_pty_only(tmp_path: Path, no_color: bool) -> None:
    """The installed command, writing to a real pseudo-terminal, colours its waterfall
    (unless NO_COLOR is set) and fits the terminal's width; into a pipe it never colours."""
    spans = tmp_path / "spans.jsonl"
    write_request(spans, "k3v9q2xd")
    command = [str(Path(sys.executable).parent / "otel-reqid-logging"), "lookup"]
    command += ["--file", str(spans), "k3v9q2xd"]
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "TERM")}
    if no_color:
        environ["NO_COLOR"] = "1"
    main, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 64, 0, 0))
    try:
        process = subprocess.Popen(command, stdout=secondary, stderr=secondary, env=environ)
        os.close(secondary)
        out = read_until_exit(main, process).decode()
    finally:
        os.close(main)
    piped = subprocess.run(command, capture_output=True, env=environ, check=True).stdout.decode()

    assert process.returncode == EXIT_FOUND, out
    assert ("\x1b[" in out) is not no_color
    rows = ANSI.sub("", out).replace("\r\n", "\n").splitlines()
    assert "└─ load user  " in "\n".join(rows)
    assert max(cells(row) for row in rows[2:]) <= 64
    assert "\x1b[" not in piped
    assert "└─ load user  " in piped


def test_the_command_draws_with_hashes_into_an_ascii_output(tmp_path: Path) -> None:
    """With an output encoding that is not UTF-8 (PYTHONIOENCODING=ascii), the command
    draws its bars with `#` and its tree in ASCII, and a name it cannot encode is escaped."""
    spans = tmp_path / "spans.jsonl"
    write_request(spans, "k3v9q2xd", service="café")
    command = [str(Path(sys.executable).parent / "otel-reqid-logging"), "lookup"]
    environ = {**os.environ, "PYTHONIOENCODING": "ascii", "COLUMNS": "70"}

    result = subprocess.run(
        [*command, "--file", str(spans), "k3v9q2xd"], capture_output=True, env=environ, check=False
    )

    assert result.returncode == EXIT_FOUND, result.stderr
    out = result.stdout.decode("ascii")
    assert "(2 spans, service caf\\xe9)" in out
    assert "`- load user  " in out
    assert re.search(r"GET /users/\{id\} +\d+\.\d\d ms +#+", out)
    assert max(len(row) for row in out.splitlines()[2:]) <= 70


def test_width_flag_and_bad_widths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--width N draws within N columns; a width that is no number or absurd is a usage error."""
    spans = tmp_path / "spans.jsonl"
    write_request(spans, "k3v9q2xd")

    assert run(["--file", str(spans), "k3v9q2xd", "--width", "40"]) == EXIT_FOUND
    out = capsys.readouterr().out
    assert max(cells(row) for row in out.splitlines()[2:]) <= 40
    assert "load user" in out
    for bad in ("wide", "39", "100000"):
        assert run(["--file", str(spans), "k3v9q2xd", "--width", bad]) == EXIT_USAGE
        assert "--width: expected columns between 40 and 1000" in capsys.readouterr().err
