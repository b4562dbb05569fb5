"""The benchmark machinery runs end to end; its arithmetic is right. No speed is asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.apps import CONFIGURATIONS
from bench.callgrind import RecordCount, ServerCount
from bench.load import parse_done_line
from bench.records import FACTORY_NAMES, PLACES
from bench.report import RECORD_TARGETS, SERVER_TARGETS, Run, evaluate, summarize

ROOT = Path(__file__).resolve().parent.parent


def run(round_index: int, configuration: str, requests: int) -> Run:
    return Run(
        configuration=configuration,
        round=round_index,
        requests=requests,
        duration_s=1.0,
        non_2xx=0,
        socket_errors=0,
        cpu_s=requests * 100e-6,
        log_lines=2 * requests,
    )


def test_ratios_are_medians_of_same_round_ratios() -> None:
    """Each round is compared with bare of that round, not with bare's overall median."""
    runs = [
        run(0, "bare", 1000),
        run(0, "ours_ids", 900),
        run(1, "bare", 500),
        run(1, "ours_ids", 400),
        run(2, "bare", 2000),
        run(2, "ours_ids", 1900),
    ]
    (bare, ours) = summarize(runs, ["bare", "ours_ids"])
    assert bare.ratio_to_bare == 1.0
    assert ours.ratio_to_bare == pytest.approx(0.9)  # ratios 0.9, 0.8, 0.95
    assert ours.requests_per_second == 900
    assert ours.cpu_us_per_request == pytest.approx(100)
    assert ours.log_lines_per_request == 2
    (ids_target,) = [
        t for t in evaluate(runs=runs, counts=[], records=[]) if "`ours_ids`" in t.label
    ]
    # Without instruction counts the wrk ratio judges the target.
    assert ids_target.instruction_ratio is None
    assert ids_target.wrk_ratio == pytest.approx(0.9)
    assert ids_target.passed is True


def count(configuration: str, per_request: int) -> ServerCount:
    return ServerCount(
        configuration=configuration,
        requests=1000,
        instructions=per_request * 1000,
        non_2xx=0,
        log_lines=2000,
    )


def test_targets_are_judged_on_instructions() -> None:
    """Instruction ratios (reference over configuration) decide; wrk only stands beside."""
    counts = [
        count("bare", 500_000),
        count("ours_ids", 600_000),  # 0.833 of bare: below 0.90
        count("sdk_floor", 700_000),
        count("ours_span", 720_000),  # 0.972 of the floor
    ]
    records = [
        RecordCount("plain", "request", 100, 40_000.0),
        RecordCount("ours", "request", 100, 41_000.0),  # +2.5 %
        RecordCount("plain", "span", 100, 40_000.0),
        RecordCount("ours", "span", 100, 44_000.0),  # +10 %
    ]
    runs = [run(0, "bare", 1000), run(0, "ours_ids", 950)]
    results = {t.label: t for t in evaluate(runs=runs, counts=counts, records=records)}
    assert len(results) == len(SERVER_TARGETS) + len(RECORD_TARGETS)
    ids = results["`ours_ids` >= 0.90 x `bare`"]
    assert ids.instruction_ratio == pytest.approx(500 / 600)
    assert ids.wrk_ratio == pytest.approx(0.95)
    assert ids.passed is False
    assert results["`ours_span` >= 0.95 x `sdk_floor`"].passed is True
    assert results["`ours_on_otel` >= 0.95 x `otel_server`"].passed is None
    assert results["record factory, request: <= 1.04 x plain"].passed is True
    span = results["record factory, span: <= 1.08 x plain"]
    assert span.instruction_ratio == pytest.approx(1.1)
    assert span.passed is False


def test_wrk_summary_line_is_parsed() -> None:
    """The done() script's JSON line is found among wrk's own report."""
    output = (
        "Running 1s test @ http://127.0.0.1:1/hello/bench\n"
        'BENCH_WRK_JSON {"requests": 5000, "duration_us": 2000000, "status_errors": 3, '
        '"connect_errors": 1, "read_errors": 0, "write_errors": 0, "timeouts": 2, '
        '"p50_us": 5000, "p99_us": 9000}\n'
    )
    result = parse_done_line(output)
    assert result.requests_per_second == 2500
    assert (result.non_2xx, result.socket_errors) == (3, 3)


def test_missing_wrk_is_explained(tmp_path: Path) -> None:
    """Without wrk on PATH the benchmark stops at once and says how to install it."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--output", str(tmp_path / "r.md")],
        cwd=ROOT,
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "apt-get install wrk" in completed.stderr
    assert not (tmp_path / "r.md").exists()


def test_missing_valgrind_is_explained(tmp_path: Path) -> None:
    """Without valgrind the instruction counts stop at once and say how to install it."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--no-wrk", "--output", str(tmp_path / "r.md")],
        cwd=ROOT,
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "apt-get install valgrind" in completed.stderr
    assert not (tmp_path / "r.md").exists()


def test_quick_run_reports_every_configuration(tmp_path: Path) -> None:
    """One short wrk round of every configuration, and a tiny record benchmark, fill the tables."""
    if shutil.which("wrk") is None:
        pytest.fail(
            "wrk, the benchmark's load generator, is not installed: "
            "sudo apt-get install wrk (Debian, Ubuntu) or brew install wrk (macOS)"
        )
    output, data_path = tmp_path / "results.md", tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--no-callgrind",
            "--rounds=1",
            "--duration=1",
            "--warmup=0",
            "--record-repeats=2",
            f"--output={output}",
            f"--json={data_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # fifteen configurations, each started and loaded for a second
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    data = json.loads(data_path.read_text())
    summaries = {summary["configuration"]: summary for summary in data["summaries"]}
    assert list(summaries) == list(CONFIGURATIONS)
    for name, summary in summaries.items():
        assert summary["requests"] > 0, name
        assert summary["non_2xx"] == summary["socket_errors"] == 0, name
        assert 0 < summary["ratio_to_bare"] < 5, name
        assert 1 < summary["cpu_us_per_request"] < 100_000, name
        # The handler's line and the access line (the ancestor adds a request-start line).
        assert 1.9 < summary["log_lines_per_request"] < 3.2, name
    assert len(data["targets"]) == len(SERVER_TARGETS) + len(RECORD_TARGETS)
    for target in data["targets"]:
        assert target["instruction_ratio"] is None, target
        assert target["wrk_ratio"] > 0, target
        assert target["passed"] in {True, False}, target
    factories = {result["name"]: result for result in data["factories"]}
    assert list(factories) == list(FACTORY_NAMES)
    assert all(
        result["outside_ns"] > 0 and result["inside_ns"] > 0 and result["span_ns"] > 0
        for result in factories.values()
    )

    report = output.read_text()
    assert report.strip() == completed.stdout.strip()
    for name in [*CONFIGURATIONS, *FACTORY_NAMES]:
        assert f"| `{name}`" in report or f"| {name} |" in report, name
    assert "Python 3." in report
    assert f"{os.cpu_count()} cores" in report


def test_callgrind_counts_requests_and_records(tmp_path: Path) -> None:
    """A tiny callgrind run counts instructions per request and per record, sanely."""
    if shutil.which("callgrind_control") is None:
        pytest.fail(
            "valgrind, the benchmark's instruction counter, is not installed: "
            "sudo apt-get install valgrind (Debian, Ubuntu)"
        )
    output, data_path = tmp_path / "results.md", tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--no-wrk",
            "--only=ours_ids",
            "--callgrind-requests=40",
            "--callgrind-warmup=10",
            "--record-count=200",
            "--piece-calls=50",
            "--record-repeats=1",
            "--jobs=2",
            f"--output={output}",
            f"--json={data_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    data = json.loads(data_path.read_text())
    counts = {c["configuration"]: c for c in data["counts"]}
    assert list(counts) == ["bare", "ours_ids"]
    for name, found in counts.items():
        assert found["requests"] == 40, name
        assert found["non_2xx"] == 0, name
        # A Python server's request: hundreds of thousands of instructions, not billions.
        assert 50_000 < found["instructions_per_request"] < 20_000_000, name
        assert 1.9 <= found["log_lines"] / found["requests"] <= 2.1, name
    # The middleware adds work: ours costs more than bare, though not several times more.
    ratio = (
        counts["bare"]["instructions_per_request"] / counts["ours_ids"]["instructions_per_request"]
    )
    assert 0.3 < ratio < 1.0
    records = {(r["factory"], r["place"]): r["instructions_per_record"] for r in data["records"]}
    assert set(records) == {(f, p) for f in FACTORY_NAMES for p in PLACES}
    for case, per_record in records.items():
        assert 2_000 < per_record < 1_000_000, case
        # Every factory does what plain LogRecord does, and more.
        assert per_record > records["plain", case[1]] * 0.999, case
    targets = {t["label"]: t for t in data["targets"]}
    ids = targets["`ours_ids` >= 0.90 x `bare`"]
    assert ids["instruction_ratio"] == pytest.approx(ratio)
    assert ids["passed"] in {True, False}
    assert targets["`ours_on_otel` >= 0.95 x `otel_server`"]["passed"] is None
    pieces = data["pieces"]
    assert "middleware, ids only" in pieces
    assert pieces["middleware, own span"] > pieces["middleware, ids only"] > 1_000
    assert "Instructions per request (callgrind)" in output.read_text()
