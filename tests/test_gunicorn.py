"""gunicorn with aiohttp's worker and several workers: every line carries the ids.

Two ways in: ``opentelemetry-instrument gunicorn ...`` with no change to the app or the
command, and the code-configured recipe ``otel_reqid_logging.gunicorn`` (post_fork and
logconfig_dict), with and without ``--preload``, as text and as JSON lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from otel_reqid_logging.gunicorn import logging_config
from otel_reqid_logging.lookup._cli import EXIT_FOUND, run
from tests.gunicorn_run import every_worker_answers, running_gunicorn
from tests.subprocess_app import BIN
from tests.test_zero_code import server_spans

WORKERS = 3
APP = "tests.gunicorn_app:app"
IDS = re.compile(r"\[req:(?P<request_id>[A-Za-z0-9._-]+) trace:(?P<trace_id>[0-9a-f]{32})\] ")
# aiohttp's access line: remote address, time, request line, status.
ACCESS = re.compile(r'127\.0\.0\.1 \[[^]]+\] "POST /checkout/\d+\S* HTTP/1\.1" 200 ')
TRACING_ENV = {
    "OTEL_SERVICE_NAME": "shop",
    "OTEL_TRACES_EXPORTER": "otel_reqid_file",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_BSP_SCHEDULE_DELAY": "100",
}


async def checkouts(url: str, count: int) -> list[dict[str, Any]]:
    """POST `count` checkouts at once; each answer's request id, trace id header and pid."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(number: int) -> dict[str, Any]:
            async with session.post(f"{url}/checkout/{number}?hold=0.05") as response:
                assert response.status == 200
                body = await response.json()
                return {"request_id": response.headers["X-Request-ID"], "pid": body["pid"]}

        return list(await asyncio.gather(*(one(n) for n in range(count))))


async def checkouts_from_every_worker(url: str, count: int) -> list[dict[str, Any]]:
    """Checkouts until every worker has answered, then `count` at once."""
    ready = await every_worker_answers(url, "/checkout/0", workers=WORKERS)
    return ready + await checkouts(url, count)


def spans_by_request_id(spans_file: Path) -> dict[str, str]:
    """request.id -> trace id of every SERVER span in the span file."""
    found = {}
    for span in server_spans(spans_file):
        request_id = span["attrs"]["request.id"]["stringValue"]
        found[request_id] = span["traceId"]
    return found


async def test_opentelemetry_instrument_gunicorn_access_lines_carry_ids(
    tmp_path: Path, no_otel_environment: None
) -> None:
    """`opentelemetry-instrument gunicorn -w 3 -k aiohttp.GunicornWebWorker app:app
    --access-logfile -`, unchanged: every access line gunicorn writes starts with the
    request id and trace id of its request, the handler lines carry the same ids, and
    every worker's spans reach the span file (each answer names its worker, and
    answers come from all three)."""
    spans_file = tmp_path / "spans.jsonl"
    command = [
        str(BIN / "opentelemetry-instrument"),
        str(BIN / "gunicorn"),
        "-w",
        str(WORKERS),
        "-k",
        "aiohttp.GunicornWebWorker",
        APP,
        "--access-logfile",
        "-",
    ]
    env = {**TRACING_ENV, "OTEL_REQID_SPANS_FILE": str(spans_file)}
    with running_gunicorn(command, env, workdir=tmp_path, workers=WORKERS) as server:
        answers = await checkouts_from_every_worker(server.url, 60)
    access_lines = [line for line in server.stdout.read_text().splitlines() if ACCESS.search(line)]
    handler_lines = [line for line in server.stderr.read_text().splitlines() if " shop " in line]

    traces = spans_by_request_id(spans_file)
    sent = {answer["request_id"] for answer in answers}
    assert len(access_lines) == len(answers)
    access_ids = {}
    for line in access_lines:
        match = IDS.match(line)
        assert match, f"access line without ids: {line!r}"
        access_ids[match["request_id"]] = match["trace_id"]
    assert set(access_ids) == sent
    assert access_ids == {request_id: traces[request_id] for request_id in sent}
    assert len(handler_lines) == 2 * len(answers)
    for line in handler_lines:
        match = IDS.search(line)
        assert match, f"handler line without ids: {line!r}"
        assert access_ids[match["request_id"]] == match["trace_id"]


@pytest.mark.parametrize("preload", [False, True], ids=["fork-loads-app", "preload"])
async def test_code_configured_recipe_text_lines(
    preload: bool, tmp_path: Path, no_otel_environment: None
) -> None:
    """`gunicorn -c python:otel_reqid_logging.gunicorn`: post_fork sets up tracing in each
    worker (with --preload too, where the app is imported in the master), and handler and
    access lines carry the ids once, in the library's format."""
    spans_file = tmp_path / "spans.jsonl"
    command = [
        str(BIN / "gunicorn"),
        "-c",
        "python:otel_reqid_logging.gunicorn",
        "-w",
        str(WORKERS),
        *(["--preload"] if preload else []),
        APP,
    ]
    env = {"OTEL_SERVICE_NAME": "shop", "OTEL_REQID_SPANS_FILE": str(spans_file)}
    env["OTEL_BSP_SCHEDULE_DELAY"] = "100"
    with running_gunicorn(command, env, workdir=tmp_path, workers=WORKERS) as server:
        answers = await checkouts_from_every_worker(server.url, 60)
    lines = server.stdout.read_text().splitlines()

    traces = spans_by_request_id(spans_file)
    sent = {answer["request_id"] for answer in answers}
    access_lines = [line for line in lines if ACCESS.search(line)]
    handler_lines = [line for line in lines if " shop " in line]
    assert len(access_lines) == len(answers)
    assert len(handler_lines) == 2 * len(answers)
    for line in access_lines + handler_lines:
        match = IDS.search(line)
        assert match, f"line without ids: {line!r}"
        assert line.count("[req:") == 1, line
        assert match["request_id"] in sent
        assert traces[match["request_id"]] == match["trace_id"]
    assert " gunicorn.error [req:- trace:-] Booting worker" in "\n".join(lines)


async def test_code_configured_recipe_json_lines(
    tmp_path: Path, no_otel_environment: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """With logging_config(json=True, filename=...), every line in the file is one JSON
    object; handler and access lines have request_id, trace_id and span_id fields, and
    `lookup` finds the trace from a pasted JSON line."""
    spans_file, log_file = tmp_path / "spans.jsonl", tmp_path / "app.log"
    config = tmp_path / "gunicorn_conf.py"
    config.write_text(
        "from otel_reqid_logging.gunicorn import logging_config, post_fork, worker_class\n"
        "accesslog = '-'\n"
        f"logconfig_dict = logging_config(json=True, filename={str(log_file)!r})\n"
    )
    command = [str(BIN / "gunicorn"), "-c", str(config), "-w", str(WORKERS), APP]
    env = {"OTEL_SERVICE_NAME": "shop", "OTEL_REQID_SPANS_FILE": str(spans_file)}
    with running_gunicorn(command, env, workdir=tmp_path, workers=WORKERS) as server:
        answers = await checkouts_from_every_worker(server.url, 30)
    lines = log_file.read_text().splitlines()
    records = [json.loads(line) for line in lines]

    traces = spans_by_request_id(spans_file)
    access = [r for r in records if r["name"] == "gunicorn.access"]
    handler = [r for r in records if r["name"] == "shop"]
    assert len(access) == len(answers)
    assert len(handler) == 2 * len(answers)
    for record in access + handler:
        assert traces[record["request_id"]] == record["trace_id"]
        assert re.fullmatch(r"[0-9a-f]{16}", record["span_id"])
        assert "[req:" not in record["message"]
    assert {r["request_id"] for r in access} == {a["request_id"] for a in answers}
    # Lines outside a request have the fields too.
    assert all({"request_id", "trace_id", "span_id"} <= set(r) for r in records)

    pasted = lines[records.index(access[0])]
    code = await asyncio.to_thread(run, ["--file", str(spans_file), pasted])
    assert code == EXIT_FOUND
    assert f"request.id={access[0]['request_id']}" in capsys.readouterr().out


def test_logging_config_text_names_the_ids() -> None:
    """The text config formats with the library's format and filters every handler."""
    config = logging_config(filename="/tmp/x.log")  # noqa: S108 (never opened)

    assert "%(request_id)s" in config["formatters"]["ids"]["format"]
    assert config["handlers"]["ids"]["class"] == "logging.FileHandler"
    assert config["handlers"]["ids"]["filters"] == ["ids"]
    assert set(config["loggers"]) == {"gunicorn.error", "gunicorn.access"}


@pytest.mark.parametrize("level", ["info", "Debug", " WARNING "])
def test_logging_config_takes_gunicorns_level_names(level: str) -> None:
    """gunicorn spells levels in lower case (``--log-level info``); the config that
    dictConfig gets has the names it accepts, so `logging_config(level="info")` works."""
    config = logging_config(level=level)

    logging.config.dictConfig(config)  # raised "Unable to configure logger" before
    try:
        assert logging.getLogger("gunicorn.error").level == logging.getLevelName(
            level.strip().upper()
        )
    finally:
        for name in ("gunicorn.error", "gunicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.setLevel(logging.NOTSET)
            logger.propagate = True


def test_log_level_is_gunicorns_unless_given(tmp_path: Path, no_otel_environment: None) -> None:
    """`gunicorn -c python:otel_reqid_logging.gunicorn --log-level debug` shows gunicorn's
    debug lines, as gunicorn alone does: the config leaves the error log's level to
    --log-level (it used to reset it to INFO)."""
    command = [str(BIN / "gunicorn"), "-c", "python:otel_reqid_logging.gunicorn"]
    command += ["-w", "1", "--log-level", "debug", APP]
    env = {"OTEL_TRACES_EXPORTER": "none"}
    with running_gunicorn(command, env, workdir=tmp_path, workers=1) as server:
        pass

    assert " DEBUG gunicorn.error [req:- trace:-] " in server.stdout.read_text()
    assert logging_config()["loggers"]["gunicorn.error"].get("level") is None
    assert logging_config(level="debug")["loggers"]["gunicorn.error"]["level"] == "DEBUG"


@pytest.mark.parametrize("level", ["verbose", "", 10])
def test_logging_config_refuses_what_is_no_level(level: object) -> None:
    """A level that is no level name fails when the config is built, naming the option."""
    with pytest.raises(ValueError, match="level must be a logging level name"):
        logging_config(level=level)  # type: ignore[arg-type]


async def test_opentelemetry_instrument_gunicorn_json_lines(
    tmp_path: Path, no_otel_environment: None
) -> None:
    """The zero-code command with gunicorn's `--log-config-json` holding
    logging_config(json=True): JSON access and handler lines have the id fields, and the
    access line's message stays as aiohttp wrote it (the ids are fields, not text)."""
    spans_file, log_file = tmp_path / "spans.jsonl", tmp_path / "app.log"
    log_config = tmp_path / "logging.json"
    log_config.write_text(json.dumps(logging_config(json=True, filename=str(log_file))))
    command = [
        str(BIN / "opentelemetry-instrument"),
        str(BIN / "gunicorn"),
        "-w",
        str(WORKERS),
        "-k",
        "aiohttp.GunicornWebWorker",
        APP,
        "--access-logfile",
        "-",
        "--log-config-json",
        str(log_config),
    ]
    env = {**TRACING_ENV, "OTEL_REQID_SPANS_FILE": str(spans_file)}
    with running_gunicorn(command, env, workdir=tmp_path, workers=WORKERS) as server:
        answers = await checkouts_from_every_worker(server.url, 30)
    records = [json.loads(line) for line in log_file.read_text().splitlines()]

    traces = spans_by_request_id(spans_file)
    access = [r for r in records if r["name"] == "gunicorn.access"]
    assert sorted(r["request_id"] for r in access) == sorted(a["request_id"] for a in answers)
    for record in access + [r for r in records if r["name"] == "shop"]:
        assert traces[record["request_id"]] == record["trace_id"]
        assert re.fullmatch(r"[0-9a-f]{16}", record["span_id"])
    assert all(ACCESS.match(r["message"]) for r in access), access[0]
