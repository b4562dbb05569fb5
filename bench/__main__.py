"""Run the benchmark: ``python -m bench [--rounds N] [--duration S] [--only CONFIG ...]``.

Every configuration gets a server process pinned to the first CPU; this process and the
``wrk`` it starts are pinned to the second. Rounds interleave the configurations (in a
rotating order), and each measured run follows a short warm-up run. The report goes to
``bench/RESULTS.md`` (``--output``) and to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from .apps import CONFIGURATIONS, ServerProcess
from .load import WrkMissingError, find_wrk, run_wrk
from .records import FactoryResult, measure_factories
from .report import SERVER_TARGETS, Run, render, summarize

__all__ = ["main"]

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS.md"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all configurations")
    parser.add_argument("--duration", type=int, default=5, help="seconds of each measured run")
    parser.add_argument(
        "--warmup", type=int, default=1, help="seconds of warm-up before each run (0: none)"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(CONFIGURATIONS),
        metavar="CONFIG",
        help=f"configurations to run (bare and the targets' references are added): "
        f"{', '.join(CONFIGURATIONS)}",
    )
    parser.add_argument(
        "--records-only", action="store_true", help="only the record-factory micro-benchmark"
    )
    parser.add_argument(
        "--no-records", action="store_true", help="skip the record-factory micro-benchmark"
    )
    parser.add_argument(
        "--record-repeats", type=int, default=15, help="repeats of the record micro-benchmark"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown report")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0 or args.record_repeats < 1:
        parser.error("--rounds, --duration and --record-repeats must be at least 1")
    return args


def _selected(only: Sequence[str] | None) -> list[str]:
    """The configurations to run, in table order, with the references they need."""
    wanted = set(only or CONFIGURATIONS)
    wanted.add("bare")
    wanted |= {SERVER_TARGETS[name].reference for name in wanted if name in SERVER_TARGETS}
    return [name for name in CONFIGURATIONS if name in wanted]


def _cores() -> tuple[int, int]:
    """Pick the server's CPU and the load generator's CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("warning: one CPU only; server and wrk share it", file=sys.stderr)
        return cpus[0], cpus[0]
    return cpus[0], cpus[1]


def _measure_servers(args: argparse.Namespace, names: list[str]) -> list[Run]:
    server_core, load_core = _cores()
    # wrk inherits this pinning; the servers pin themselves to server_core.
    os.sched_setaffinity(0, {load_core})
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as folder, ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                ServerProcess(name, Path(folder) / f"{name}.log", server_core)
            )
            for name in names
        }
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                server = servers[name]
                if args.warmup:
                    run_wrk(server.url, duration_s=args.warmup, connections=args.connections)
                server.take_log_lines()
                cpu_before = server.cpu_seconds()
                load = run_wrk(server.url, duration_s=args.duration, connections=args.connections)
                cpu_s = server.cpu_seconds() - cpu_before
                run = Run(
                    configuration=name,
                    round=round_index,
                    requests=load.requests,
                    duration_s=load.duration_s,
                    non_2xx=load.non_2xx,
                    socket_errors=load.socket_errors,
                    cpu_s=cpu_s,
                    log_lines=server.take_log_lines(),
                )
                runs.append(run)
                print(
                    f"round {round_index + 1}/{args.rounds} {name:>13}: "
                    f"{run.requests_per_second:8,.0f} req/s, "
                    f"{cpu_s / max(run.requests, 1) * 1e6:5.0f} CPU µs/req",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write the report and print it."""
    args = _parse(argv)
    runs: list[Run] = []
    names: list[str] = []
    if not args.records_only:
        try:
            find_wrk()
        except WrkMissingError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        names = _selected(args.only)
        runs = _measure_servers(args, names)
    factories: list[FactoryResult] = []
    if not args.no_records:
        print("record factories ...", file=sys.stderr, flush=True)
        factories = measure_factories(repeats=args.record_repeats)
    summaries = summarize(runs, names)
    settings = (
        f"{args.rounds} rounds x {len(names)} configurations, {args.duration} s runs after "
        f"{args.warmup} s warm-up, wrk 1 thread / {args.connections} connections on loopback; "
        f"record factories: {args.record_repeats} repeats"
    )
    text = render(
        summaries=summaries,
        descriptions={name: c.description for name, c in CONFIGURATIONS.items()},
        factories=factories,
        settings=settings,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    if args.json is not None:
        data = {
            "summaries": [
                {**dataclasses.asdict(summary), "passed": summary.passed} for summary in summaries
            ],
            "runs": [dataclasses.asdict(run) for run in runs],
            "factories": [dataclasses.asdict(result) for result in factories],
        }
        args.json.write_text(json.dumps(data, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
