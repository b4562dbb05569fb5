"""The benchmark's own checks: short runs of it, end to end. No speed is asserted.

They need wrk and valgrind, so they are not part of the test suite (pyproject.toml's
``norecursedirs``): ``python3 dev.py bench --check`` runs them, installing the two with
apt-get as root or saying how to, and CI runs that after the suite. Without a tool, each
check fails saying what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.apps import CONFIGURATIONS
from bench.records import FACTORY_NAMES, PLACES
from bench.report import RECORD_TARGETS, SERVER_TARGETS

ROOT = Path(__file__).resolve().parent.parent.parent


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
            "--no-lookup",
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
            "--no-lookup",
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
