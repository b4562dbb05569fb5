"""The whole story as production runs it, end to end, with real parts only.

gunicorn with aiohttp's worker and 3 workers, set up by the library's gunicorn recipe:
JSON log lines to a file, spans over OTLP to the repository's collector config (run by
the OpenTelemetry Collector built from its own modules), on to a real Jaeger. 300
requests (after a few that wait for every worker to be up), in waves of 150 at once; one
worker is SIGKILLed while it holds some of them. Then lines picked at random from the
file are pasted into `otel-reqid-logging lookup --backend jaeger`, which must find each
line's trace.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.gunicorn_run import every_worker_answers, running_gunicorn, workers_of
from tests.subprocess_app import BIN
from tests.tools import JaegerServer, OtelCollector

WORKERS = 3
FIRST_WAVE, HELD, LAST_WAVE = 150, 60, 90  # 300 requests in all
HOLD_S = 3.0
LOOKUPS = 20
JAEGER_WAIT_S = 20.0
APP = "tests.gunicorn_app:app"
TRACE_ID = re.compile(r"[0-9a-f]{32}")


async def checkout(session: aiohttp.ClientSession, url: str, hold: float) -> dict[str, Any]:
    """One request; its request id and worker pid, or the error a lost request gets."""
    try:
        async with session.post(f"{url}/checkout/1?hold={hold}") as response:
            assert response.status == 200, await response.text()
            body = await response.json()
            return {"request_id": response.headers["X-Request-ID"], "pid": body["pid"]}
    except aiohttp.ClientError as error:
        return {"error": type(error).__name__}


def read_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every line of the log file with its JSON object; AssertionError for a non-JSON line."""
    lines = []
    for text in path.read_text().splitlines():
        try:
            lines.append((text, json.loads(text)))
        except ValueError:
            raise AssertionError(f"not a JSON line: {text!r}") from None
    return lines


def started_by(log_file: Path) -> dict[int, int]:
    """How many requests each worker pid has started (their first handler line)."""
    held: dict[int, int] = {}
    for _, record in read_lines(log_file):
        if record["name"] == "shop" and record["message"].startswith("checking out"):
            held[record["process"]] = held.get(record["process"], 0) + 1
    return held


def jaeger_request_ids(jaeger: JaegerServer, service: str) -> set[str]:
    """request.id of every SERVER span of `service` in Jaeger, through its api_v3 search."""
    query = (
        f"{jaeger.query_url}/api/v3/traces?query.service_name={service}"
        "&query.start_time_min=2000-01-01T00:00:00Z&query.start_time_max=2100-01-01T00:00:00Z"
        "&query.num_traces=1000"
    )
    found: set[str] = set()
    try:
        with urllib.request.urlopen(query, timeout=30) as answer:  # noqa: S310 (loopback)
            body = json.load(answer)
    except urllib.error.HTTPError as error:
        if error.code == 404:  # "No traces found": none has arrived yet
            return found
        raise
    for resource_spans in body.get("result", {}).get("resourceSpans", []):
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for attribute in span.get("attributes", []):
                    if attribute["key"] == "request.id" and span["kind"] == 2:
                        found.add(attribute["value"]["stringValue"])
    return found


def lookup(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`otel-reqid-logging lookup --backend jaeger '<the JSON line>'`, as a user runs it."""
    return subprocess.run(
        [str(BIN / "otel-reqid-logging"), "lookup", "--backend", "jaeger", line],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_gunicorn_json_logs_to_jaeger_with_a_worker_killed(
    otel_collector: OtelCollector,
    jaeger_server: JaegerServer,
    tmp_path: Path,
    no_otel_environment: None,
) -> None:
    """Every line has its ids; every request that got an answer has its trace in Jaeger,
    which `lookup` finds from a pasted JSON line; the SIGKILLed worker is replaced and
    loses only the requests it held."""
    service = f"shop-{uuid.uuid4().hex[:8]}"
    log_file = tmp_path / "app.log"
    config = tmp_path / "gunicorn_conf.py"
    config.write_text(
        "from otel_reqid_logging.gunicorn import accesslog, logging_config, post_fork\n"
        "from otel_reqid_logging.gunicorn import worker_class\n"
        f"logconfig_dict = logging_config(json=True, filename={str(log_file)!r})\n"
    )
    env = {
        "OTEL_SERVICE_NAME": service,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otel_collector.otlp_http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    command = [str(BIN / "gunicorn"), "-c", str(config), "-w", str(WORKERS), APP]
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    with running_gunicorn(command, env, workdir=tmp_path, workers=WORKERS) as server:
        before = workers_of(server.pid)
        ready = await every_worker_answers(server.url, "/checkout/0", workers=WORKERS)
        async with aiohttp.ClientSession(connector=connector) as session:
            first = await asyncio.gather(
                *(checkout(session, server.url, 0.05) for _ in range(FIRST_WAVE))
            )
            # Long enough for every worker to export the spans of the first wave.
            await asyncio.sleep(0.5)
            held = [
                asyncio.ensure_future(checkout(session, server.url, HOLD_S)) for _ in range(HELD)
            ]
            deadline = time.monotonic() + 10
            while sum(started_by(log_file).values()) - len(ready) - FIRST_WAVE < HELD:
                assert time.monotonic() < deadline, "the held requests did not all start"
                await asyncio.sleep(0.05)
            # Started but not answered yet: the held requests, per worker.
            holding = started_by(log_file)
            for answer in [*ready, *first]:
                holding[answer["pid"]] -= 1
            victim = max(before, key=lambda pid: holding.get(pid, 0))
            victim_held = holding.get(victim, 0)
            os.kill(victim, signal.SIGKILL)
            last = await asyncio.gather(
                *(checkout(session, server.url, 0.05) for _ in range(LAST_WAVE))
            )
            answers = [*ready, *first, *await asyncio.gather(*held), *last]
        deadline = time.monotonic() + 15
        while len(workers_of(server.pid) - before) != 1 or len(workers_of(server.pid)) != WORKERS:
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            await asyncio.sleep(0.1)

    # The killed worker held some requests: exactly those were lost, nothing else.
    lost = [answer for answer in answers if "error" in answer]
    served = {answer["request_id"]: answer["pid"] for answer in answers if "error" not in answer}
    assert len(answers) == len(ready) + FIRST_WAVE + HELD + LAST_WAVE
    assert victim_held > 0
    assert len(lost) == victim_held, (lost, victim_held)

    # No line lacks ids; every line of a request has that request's trace id.
    lines = read_lines(log_file)
    request_lines = []
    for text, record in lines:
        assert {"request_id", "trace_id", "span_id"} <= set(record), text
        if record["name"] in ("shop", "gunicorn.access"):
            assert TRACE_ID.fullmatch(record["trace_id"]), text
            request_lines.append((text, record))
    trace_of: dict[str, str] = {}
    for _text, record in request_lines:
        assert trace_of.setdefault(record["request_id"], record["trace_id"]) == record["trace_id"]
    # Lines of requests that got no answer all come from the killed worker.
    unanswered = {r["request_id"] for _, r in request_lines if r["request_id"] not in served}
    assert len(unanswered) == victim_held
    assert all(r["process"] == victim for _, r in request_lines if r["request_id"] in unanswered)
    access = [r for _, r in request_lines if r["name"] == "gunicorn.access"]
    assert sorted(r["request_id"] for r in access) == sorted(served)

    # Every answered request has its SERVER span in Jaeger, through the collector.
    deadline = time.monotonic() + JAEGER_WAIT_S
    while not set(served) <= (in_jaeger := jaeger_request_ids(jaeger_server, service)):
        assert time.monotonic() < deadline, f"{len(set(served) - in_jaeger)} traces missing"
        await asyncio.sleep(0.5)

    # Lines picked at random, handler and access lines alike, found by `lookup`.
    rng = random.Random(service)  # noqa: S311 (picks lines to look up, no secret)
    answered_lines = [(t, r) for t, r in request_lines if r["request_id"] in served]
    picked = rng.sample([x for x in answered_lines if x[1]["name"] == "shop"], LOOKUPS // 2)
    picked += rng.sample([x for x in answered_lines if x[1]["name"] != "shop"], LOOKUPS // 2)
    lookup_env = {
        **os.environ,
        "OTEL_SERVICE_NAME": service,
        "OTEL_REQID_JAEGER_URL": jaeger_server.query_url,
    }
    results = await asyncio.gather(
        *(asyncio.to_thread(lookup, text, lookup_env) for text, _ in picked)
    )
    for (text, record), result in zip(picked, results, strict=True):
        assert result.returncode == 0, (text, result.stderr)
        assert f"trace {record['trace_id']}  (" in result.stdout
        assert f"SERVER  request.id={record['request_id']}" in result.stdout, result.stdout
