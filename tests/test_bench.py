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
from bench.load import parse_done_line
from bench.records import FACTORY_NAMES
from bench.report import SERVER_TARGETS, Run, summarize

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
    assert ours.target == SERVER_TARGETS["ours_ids"]
    assert ours.passed is True


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


def test_quick_run_reports_every_configuration(tmp_path: Path) -> None:
    """One short round of every configuration, and a tiny record benchmark, fill the tables."""
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
        timeout=120,
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
        if name in SERVER_TARGETS:
            assert summary["ratio_to_reference"] > 0, name
            assert summary["passed"] in {True, False}, name
    factories = {result["name"]: result for result in data["factories"]}
    assert list(factories) == list(FACTORY_NAMES)
    assert all(
        result["outside_ns"] > 0 and result["inside_ns"] > 0 for result in factories.values()
    )

    report = output.read_text()
    assert report.strip() == completed.stdout.strip()
    for name in [*CONFIGURATIONS, *FACTORY_NAMES]:
        assert f"| `{name}`" in report or f"| {name} |" in report, name
    assert "Python 3." in report
    assert f"{os.cpu_count()} cores" in report
