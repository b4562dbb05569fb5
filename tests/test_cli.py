"""The ``otel-reqid-logging`` command itself: its sub-commands, usage and version."""

from __future__ import annotations

import pytest

import otel_reqid_logging
from otel_reqid_logging.cli import main


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`otel-reqid-logging --version` answers with the version, exit 0, as CLIs do."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"otel-reqid-logging {otel_reqid_logging.__version__}\n"


USAGE = "usage: otel-reqid-logging [--version] {demo,lookup} ..."


@pytest.mark.parametrize(("argv", "code"), [(["--help"], 0), ([], 2)])
def test_usage_names_the_sub_commands(
    argv: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """--help prints the usage on stdout (exit 0); no command prints it on stderr (2)."""
    assert main(argv) == code
    captured = capsys.readouterr()
    assert (captured.out if code == 0 else captured.err).startswith(USAGE)


def test_an_unknown_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped command is named before the usage, so the user sees what was wrong."""
    assert main(["lokup", "k3v9q2xd"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("otel-reqid-logging: unknown command 'lokup'\n" + USAGE)
