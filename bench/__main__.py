"""Run the benchmark: ``python -m bench [--rounds N] [--duration S] [--only CONFIG ...]``.

Two kinds of figures. Instruction counts, from each server run under valgrind's callgrind
(N requests on one keep-alive connection after a warm-up), are deterministic and judge
the targets. Requests per second, from ``wrk``, are shown beside them: every configuration
gets a server process pinned to the first CPU, this process and ``wrk`` are pinned to the
second, rounds interleave the configurations in a rotating order, and each measured run
follows a short warm-up run. The record factories are counted and timed the same two
ways. The report goes to ``bench/RESULTS.md`` (``--output``) and to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from . import lookup
from .apps import CONFIGURATIONS, ServerProcess
from .callgrind import (
    RecordCount,
    ServerCount,
    ValgrindMissingError,
    count_pieces,
    count_records,
    count_server,
    find_valgrind,
)
from .load import WrkMissingError, find_wrk, run_wrk
from .records import FACTORY_NAMES, PLACES, FactoryResult, measure_factories
from .report import SERVER_TARGETS, Run, evaluate, render, summarize

__all__ = ["main"]

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS.md"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="wrk rounds over all configurations")
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
    parser.add_argument("--no-wrk", action="store_true", help="skip the wrk runs")
    parser.add_argument("--no-callgrind", action="store_true", help="skip instruction counts")
    parser.add_argument(
        "--callgrind-requests",
        type=int,
        default=1000,
        help="requests counted per configuration under callgrind",
    )
    parser.add_argument(
        "--callgrind-warmup", type=int, default=200, help="requests before the count starts"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="servers counted under callgrind at the same time"
    )
    parser.add_argument(
        "--no-pieces", action="store_true", help="skip the profile of the middleware's steps"
    )
    parser.add_argument(
        "--piece-calls", type=int, default=2000, help="calls counted per hot-path piece"
    )
    parser.add_argument(
        "--profiles", type=Path, help="keep callgrind's profiles here (for callgrind_annotate)"
    )
    parser.add_argument(
        "--records-only", action="store_true", help="only the record-factory benchmarks"
    )
    parser.add_argument(
        "--no-records", action="store_true", help="skip the record-factory benchmarks"
    )
    parser.add_argument(
        "--record-repeats", type=int, default=15, help="repeats of the timed record benchmark"
    )
    parser.add_argument(
        "--record-count", type=int, default=5000, help="records counted per case under callgrind"
    )
    parser.add_argument(
        "--no-lookup",
        action="store_true",
        help="skip the trace lookup in a busy Jaeger (bench/lookup.py; builds Jaeger once)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown report")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if (
        min(
            args.rounds,
            args.duration,
            args.record_repeats,
            args.record_count,
            args.jobs,
            args.callgrind_requests,
            args.piece_calls,
        )
        < 1
        or args.warmup < 0
        or args.callgrind_warmup < 0
    ):
        parser.error("counts and durations must be at least 1 (warm-ups at least 0)")
    return args


def _selected(only: Sequence[str] | None) -> list[str]:
    """The configurations to run, in table order, with the references they need."""
    wanted = set(only or CONFIGURATIONS)
    wanted.add("bare")
    wanted |= {target.reference for target in SERVER_TARGETS if target.configuration in wanted}
    return [name for name in CONFIGURATIONS if name in wanted]


# The CPUs this process may use when it starts, before it pins itself for wrk.
_CPUS = sorted(os.sched_getaffinity(0))


def _cores() -> tuple[int, int]:
    """Pick the server's CPU and the load generator's CPU."""
    cpus = _CPUS
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


def _count_servers(args: argparse.Namespace, names: list[str]) -> list[ServerCount]:
    server_core, _ = _cores()

    def count(name: str) -> ServerCount:
        result = count_server(
            name,
            requests=args.callgrind_requests,
            warmup=args.callgrind_warmup,
            core=server_core,
            profiles=args.profiles,
        )
        print(
            f"callgrind {name:>17}: {result.instructions_per_request:10,.0f} instructions/req",
            file=sys.stderr,
            flush=True,
        )
        return result

    # Instruction counts do not depend on what else runs, so servers may share the CPU.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        return list(pool.map(count, names))


def _count_records(args: argparse.Namespace) -> list[RecordCount]:
    print("callgrind record factories ...", file=sys.stderr, flush=True)
    cases = [(factory, place) for factory in FACTORY_NAMES for place in PLACES]
    return count_records(cases, records=args.record_count, profiles=args.profiles)


def _check_tools(args: argparse.Namespace) -> str | None:
    """Return what is missing to run the selected measurements, or None."""
    try:
        if not args.records_only and not args.no_wrk:
            find_wrk()
        if not args.no_callgrind and not (args.records_only and args.no_records):
            find_valgrind()
    except (WrkMissingError, ValgrindMissingError) as error:
        return str(error)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write the report and print it."""
    args = _parse(argv)
    missing = _check_tools(args)
    if missing is not None:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    names = [] if args.records_only else _selected(args.only)
    runs: list[Run] = [] if args.no_wrk else _measure_servers(args, names) if names else []
    counts: list[ServerCount] = [] if args.no_callgrind else _count_servers(args, names)
    factories: list[FactoryResult] = []
    records: list[RecordCount] = []
    if not args.no_records:
        print("record factories ...", file=sys.stderr, flush=True)
        factories = measure_factories(repeats=args.record_repeats)
        if not args.no_callgrind:
            records = _count_records(args)
    pieces: dict[str, float] = {}
    if not args.no_callgrind and not args.no_pieces and not args.records_only:
        print("callgrind hot-path pieces ...", file=sys.stderr, flush=True)
        pieces = count_pieces(calls=args.piece_calls, profiles=args.profiles)
    summaries = summarize(runs, names)
    targets = evaluate(runs=runs, counts=counts, records=records, factories=factories)
    settings = (
        f"callgrind: {args.callgrind_requests} requests after {args.callgrind_warmup} "
        f"(one keep-alive connection), {args.record_count} records per case; "
        f"wrk: {args.rounds} rounds x {len(names)} configurations, {args.duration} s runs "
        f"after {args.warmup} s warm-up, 1 thread / {args.connections} connections on "
        f"loopback; timed records: {args.record_repeats} repeats"
    )
    text = render(
        summaries=summaries,
        counts=counts,
        records=records,
        factories=factories,
        targets=targets,
        pieces=pieces,
        descriptions={name: c.description for name, c in CONFIGURATIONS.items()},
        settings=settings,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    if args.json is not None:
        data = {
            "summaries": [dataclasses.asdict(summary) for summary in summaries],
            "runs": [dataclasses.asdict(run) for run in runs],
            "counts": [
                {**dataclasses.asdict(c), "instructions_per_request": c.instructions_per_request}
                for c in counts
            ],
            "records": [dataclasses.asdict(record) for record in records],
            "factories": [dataclasses.asdict(result) for result in factories],
            "targets": [dataclasses.asdict(target) for target in targets],
            "pieces": pieces,
        }
        args.json.write_text(json.dumps(data, indent=2))
    print(text)
    if not args.no_lookup:
        # Its own section of the same report, after the servers' figures.
        print("trace lookup in a busy Jaeger ...", file=sys.stderr, flush=True)
        return lookup.main(["--output", str(args.output)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
