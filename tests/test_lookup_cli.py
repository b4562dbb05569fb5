"""The lookup command line: options, environment defaults and exit codes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from otel_reqid_logging.lookup._cli import (
    EXIT_BACKEND_ERROR,
    EXIT_FOUND,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    run,
)


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """--help prints usage with the exit codes and environment variables, and exits 0."""
    assert run(["--help"]) == EXIT_FOUND
    out = capsys.readouterr().out
    assert "usage: otel-reqid-logging lookup" in out
    assert "3 trace store unreachable" in out
    assert "OTEL_REQID_SPANS_FILE" in out


def test_help_says_a_request_id_is_searched_in_every_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--service narrows a search that by default covers every service; its variable is
    the lookup's own, not the app's OTEL_SERVICE_NAME."""
    assert run(["--help"]) == EXIT_FOUND
    out = " ".join(capsys.readouterr().out.split())
    assert "--service NAME search by request id in this service only" in out
    assert "default: every service" in out
    assert "--service OTEL_REQID_LOOKUP_SERVICE" in out
    assert "OTEL_SERVICE_NAME" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lookback", "1 hour", "k3v9q2xd"], "expected a number and a unit"),
        (["--timeout", "0", "k3v9q2xd"], "expected seconds between 0 and 600"),
        (["--backend", "zipkin", "k3v9q2xd"], "invalid choice: 'zipkin'"),
        ([], "the following arguments are required"),
    ],
)
def test_bad_options_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Malformed options are usage errors (exit 2), with argparse's message."""
    assert run(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_bad_backend_from_environment_is_quoted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong OTEL_REQID_LOOKUP_BACKEND is a usage error that shows the value escaped."""
    monkeypatch.setenv("OTEL_REQID_LOOKUP_BACKEND", "jaeger\x1b[0m")

    assert run(["k3v9q2xd"]) == EXIT_USAGE

    err = capsys.readouterr().err
    assert "OTEL_REQID_LOOKUP_BACKEND must be one of file, jaeger, phoenix" in err
    assert "\x1b" not in err


def test_lookback_from_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """OTEL_REQID_LOOKUP_LOOKBACK is checked like --lookback, and the message names the
    variable (the user never typed --lookback)."""
    monkeypatch.setenv("OTEL_REQID_LOOKUP_LOOKBACK", "soon")

    assert run(["k3v9q2xd"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "OTEL_REQID_LOOKUP_LOOKBACK='soon': expected a number and a unit" in err
    assert "--lookback" not in err


@pytest.mark.parametrize(
    "url", ["localhost:16686", "jaeger", "ftp://jaeger:21", "http://[::1", "http://", ""]
)
@pytest.mark.parametrize("option", ["--jaeger-url", "--jaeger-ui-url", "--phoenix-url"])
def test_a_url_that_is_none_is_a_usage_error(
    option: str, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trace store's address that is no http(s) URL with a host is bad input (exit 2),
    said before any request is tried, not "unreachable" (exit 3) with an aiohttp class name."""
    argv = ["--backend", "jaeger", "--service", "shop", option, url, "k3v9q2xd"]

    assert run(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"argument {option}: expected an http:// or https:// URL with a host" in err
    assert "ClientError" not in err


@pytest.mark.parametrize(
    "variable", ["OTEL_REQID_JAEGER_URL", "OTEL_REQID_JAEGER_UI_URL", "OTEL_REQID_PHOENIX_URL"]
)
def test_a_url_from_the_environment_names_its_variable(
    variable: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong address in the environment is bad input naming the variable and the value."""
    monkeypatch.setenv(variable, "jaeger:16686")

    assert run(["--backend", "jaeger", "--service", "shop", "k3v9q2xd"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{variable}='jaeger:16686': expected an http:// or https:// URL" in err


def test_a_flag_replaces_a_wrong_environment_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong variable that a flag overrides is never used, so it is not an error."""
    monkeypatch.setenv("OTEL_REQID_LOOKUP_LOOKBACK", "soon")
    monkeypatch.setenv("OTEL_REQID_JAEGER_URL", "jaeger:16686")
    spans = tmp_path / "spans.jsonl"
    spans.write_text("")

    argv = ["--lookback", "1h", "--jaeger-url", "http://127.0.0.1:9", "--backend", "file"]
    assert run([*argv, "--file", str(spans), "k3v9q2xd"]) == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert "soon" not in err
    assert "jaeger:16686" not in err


def test_phoenix_url_alone_selects_phoenix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lookup ID --phoenix-url URL` asks Phoenix (here: nothing listens, so it says it
    cannot reach Phoenix), not the local span file; --backend still wins over it."""
    monkeypatch.delenv("OTEL_REQID_LOOKUP_BACKEND", raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    code = run(["--phoenix-url", url, "k3v9q2xd"])
    err = capsys.readouterr().err
    spans = tmp_path / "spans.jsonl"
    spans.write_text("")
    explicit = run(["--backend", "file", "--file", str(spans), "--phoenix-url", url, "x1"])

    assert code == EXIT_BACKEND_ERROR
    assert f"cannot reach Phoenix at {url}" in err
    assert explicit == EXIT_NOT_FOUND
