"""The results: per-configuration medians and counts, the speed targets, the markdown tables."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version

from .callgrind import RecordCount, ServerCount
from .records import FactoryResult

__all__ = [
    "RECORD_TARGETS",
    "SERVER_TARGETS",
    "RecordTarget",
    "Run",
    "Summary",
    "Target",
    "TargetResult",
    "evaluate",
    "record_ratios",
    "render",
    "summarize",
]


@dataclass(frozen=True)
class Run:
    """One measured wrk run against one configuration in one round."""

    configuration: str
    round: int
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    cpu_s: float
    log_lines: int

    @property
    def requests_per_second(self) -> float:
        """Completed requests per second."""
        return self.requests / self.duration_s if self.duration_s else 0.0


@dataclass(frozen=True)
class Target:
    """A server speed target: ``configuration`` serves at least ``minimum`` x ``reference``.

    Judged on instruction counts (the reference's instructions per request over the
    configuration's); the wrk ratio of the same pair is shown beside it.
    """

    configuration: str
    reference: str
    minimum: float

    @property
    def label(self) -> str:
        """The target as a reader would say it."""
        return f"`{self.configuration}` >= {self.minimum:.2f} x `{self.reference}`"


@dataclass(frozen=True)
class RecordTarget:
    """A record factory target: ours costs at most ``maximum`` x plain ``LogRecord`` there."""

    place: str
    maximum: float

    @property
    def label(self) -> str:
        """The target as a reader would say it."""
        return f"record factory, {self.place}: <= {self.maximum:.2f} x plain"


SERVER_TARGETS: tuple[Target, ...] = (
    Target("ours_span", "sdk_floor", 0.95),
    Target("ours_span_metrics", "otel_server", 1.30),
    Target("ours_span_metrics_old", "otel_server_old", 1.30),
    Target("ours_on_otel", "otel_server", 0.95),
    Target("ours_ids", "bare", 0.90),
)
RECORD_TARGETS: tuple[RecordTarget, ...] = (
    RecordTarget("request", 1.04),
    RecordTarget("span", 1.08),
)


@dataclass(frozen=True)
class Summary:
    """The wrk medians of one configuration over all rounds."""

    configuration: str
    requests_per_second: float
    ratio_to_bare: float | None
    cpu_us_per_request: float
    requests: int
    non_2xx: int
    socket_errors: int
    log_lines_per_request: float


@dataclass(frozen=True)
class TargetResult:
    """A target, what each kind of figure says about it, and the verdict."""

    label: str
    instruction_ratio: float | None
    wrk_ratio: float | None
    #: Judged on instructions where they were counted, otherwise on wrk.
    passed: bool | None


def median_ratio(runs: Sequence[Run], reference: Sequence[Run]) -> float | None:
    """Median over rounds of the ratio of req/s to the reference's req/s of that round."""
    by_round = {run.round: run.requests_per_second for run in reference}
    ratios = [
        run.requests_per_second / by_round[run.round] for run in runs if by_round.get(run.round)
    ]
    return statistics.median(ratios) if ratios else None


def summarize(runs: Sequence[Run], order: Sequence[str]) -> list[Summary]:
    """Reduce the wrk runs to one summary per configuration, in ``order``."""
    by_configuration: dict[str, list[Run]] = {}
    for run in runs:
        by_configuration.setdefault(run.configuration, []).append(run)
    summaries = []
    for name in order:
        own = by_configuration.get(name)
        if not own:
            continue
        requests = sum(run.requests for run in own)
        summaries.append(
            Summary(
                configuration=name,
                requests_per_second=statistics.median(run.requests_per_second for run in own),
                ratio_to_bare=median_ratio(own, by_configuration.get("bare", [])),
                cpu_us_per_request=statistics.median(
                    run.cpu_s / run.requests * 1e6 for run in own if run.requests
                )
                if requests
                else 0.0,
                requests=requests,
                non_2xx=sum(run.non_2xx for run in own),
                socket_errors=sum(run.socket_errors for run in own),
                log_lines_per_request=sum(run.log_lines for run in own) / requests
                if requests
                else 0.0,
            )
        )
    return summaries


def _instruction_ratio(counts: dict[str, ServerCount], name: str, reference: str) -> float | None:
    """How many of ``name``'s requests fit in the instructions of one ``reference`` request."""
    own, ref = counts.get(name), counts.get(reference)
    if own is None or ref is None or not own.instructions_per_request:
        return None
    return ref.instructions_per_request / own.instructions_per_request


def record_ratios(records: Sequence[RecordCount], factory: str = "ours") -> dict[str, float]:
    """Instructions per record of ``factory`` over plain ``LogRecord``'s, for each place."""
    plain = {r.place: r.instructions_per_record for r in records if r.factory == "plain"}
    return {
        r.place: r.instructions_per_record / plain[r.place]
        for r in records
        if r.factory == factory and plain.get(r.place)
    }


def _verdict(ratio: float | None, threshold: float, *, at_least: bool) -> bool | None:
    if ratio is None:
        return None
    return ratio >= threshold if at_least else ratio <= threshold


def evaluate(
    *,
    runs: Sequence[Run],
    counts: Sequence[ServerCount],
    records: Sequence[RecordCount],
    factories: Sequence[FactoryResult] = (),
) -> list[TargetResult]:
    """Judge every target on the figures measured (a target lacking them has no verdict)."""
    by_name = {count.configuration: count for count in counts}
    by_configuration: dict[str, list[Run]] = {}
    for run in runs:
        by_configuration.setdefault(run.configuration, []).append(run)
    results = []
    for target in SERVER_TARGETS:
        instructions = _instruction_ratio(by_name, target.configuration, target.reference)
        wrk = None
        if target.configuration in by_configuration and target.reference in by_configuration:
            wrk = median_ratio(
                by_configuration[target.configuration], by_configuration[target.reference]
            )
        judged = instructions if instructions is not None else wrk
        results.append(
            TargetResult(
                label=target.label,
                instruction_ratio=instructions,
                wrk_ratio=wrk,
                passed=_verdict(judged, target.minimum, at_least=True),
            )
        )
    ratios = record_ratios(records)
    timed = {result.name: result for result in factories}
    for record_target in RECORD_TARGETS:
        instructions = ratios.get(record_target.place)
        wall = _wall_record_ratio(timed, record_target.place)
        judged = instructions if instructions is not None else wall
        results.append(
            TargetResult(
                label=record_target.label,
                instruction_ratio=instructions,
                wrk_ratio=wall,
                passed=_verdict(judged, record_target.maximum, at_least=False),
            )
        )
    return results


def _wall_record_ratio(timed: dict[str, FactoryResult], place: str) -> float | None:
    ours, plain = timed.get("ours"), timed.get("plain")
    if ours is None or plain is None:
        return None
    field = {"outside": "outside", "request": "inside", "span": "span"}[place]
    plain_ns = getattr(plain, f"{field}_ns")
    if not plain_ns:
        return None
    return float((plain_ns + getattr(ours, f"{field}_delta_ns")) / plain_ns)


def _result(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "n/a"}[passed]


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _versions() -> str:
    names = ("aiohttp", "opentelemetry-api", "opentelemetry-sdk", "opentelemetry-instrumentation")
    packages = ", ".join(f"{name} {version(name)}" for name in names)
    return f"Python {platform.python_version()}, {packages}"


def _machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'cpu'}), "
        f"{platform.system()} {platform.release()}"
    )


def _targets_table(results: Sequence[TargetResult]) -> list[str]:
    lines = [
        "| target | instructions ratio | wall-clock ratio (median) | result |",
        "|---|--:|--:|---|",
    ]
    lines += [
        f"| {r.label} | {_ratio(r.instruction_ratio)} | {_ratio(r.wrk_ratio)} "
        f"| {_result(r.passed)} |"
        for r in results
    ]
    return lines


def _count_table(counts: Sequence[ServerCount], descriptions: dict[str, str]) -> list[str]:
    lines = [
        "| configuration | instructions/request | ratio to bare | requests | non-2xx "
        "| log lines/req |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    bare = {c.configuration: c for c in counts}.get("bare")
    for count in counts:
        ratio = ""
        if bare is not None and count.instructions_per_request:
            ratio = f"{bare.instructions_per_request / count.instructions_per_request:.3f}"
        lines.append(
            f"| `{count.configuration}`: {descriptions.get(count.configuration, '')} "
            f"| {count.instructions_per_request / 1000:,.1f}k | {ratio} | {count.requests:,} "
            f"| {count.non_2xx} | {count.log_lines / max(count.requests, 1):.2f} |"
        )
    return lines


def _record_count_table(records: Sequence[RecordCount]) -> list[str]:
    places = list(dict.fromkeys(r.place for r in records))
    header = " | ".join(f"{place}: instructions/record | x plain" for place in places)
    lines = [f"| record factory | {header} |", "|---|" + "--:|--:|" * len(places)]
    plain = {r.place: r.instructions_per_record for r in records if r.factory == "plain"}
    for factory in dict.fromkeys(r.factory for r in records):
        cells = []
        for place in places:
            found = [r for r in records if r.factory == factory and r.place == place]
            if not found:
                cells += ["", ""]
                continue
            value = found[0].instructions_per_record
            base = plain.get(place)
            cells += [f"{value:,.0f}", f"{value / base:.3f}" if base else ""]
        lines.append(f"| {factory} | {' | '.join(cells)} |")
    return lines


def _server_table(summaries: Sequence[Summary], descriptions: dict[str, str]) -> list[str]:
    lines = [
        "| configuration | req/s (median) | ratio to bare | CPU µs/req | requests | non-2xx "
        "| socket errors | log lines/req |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for summary in summaries:
        ratio = "" if summary.ratio_to_bare is None else f"{summary.ratio_to_bare:.2f}"
        lines.append(
            f"| `{summary.configuration}`: {descriptions.get(summary.configuration, '')} "
            f"| {summary.requests_per_second:,.0f} | {ratio} "
            f"| {summary.cpu_us_per_request:.0f} | {summary.requests:,} | {summary.non_2xx} "
            f"| {summary.socket_errors} | {summary.log_lines_per_request:.2f} |"
        )
    return lines


def _factory_table(results: Sequence[FactoryResult]) -> list[str]:
    lines = [
        "| record factory | outside: ns/record | delta | in a request: ns/record | delta "
        "| in a span: ns/record | delta |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {r.name} | {r.outside_ns:,.0f} | {r.outside_delta_ns:+,.0f} "
        f"| {r.inside_ns:,.0f} | {r.inside_delta_ns:+,.0f} "
        f"| {r.span_ns:,.0f} | {r.span_delta_ns:+,.0f} |"
        for r in results
    ]
    return lines


def render(
    *,
    summaries: Sequence[Summary],
    counts: Sequence[ServerCount],
    records: Sequence[RecordCount],
    factories: Sequence[FactoryResult],
    targets: Sequence[TargetResult],
    descriptions: dict[str, str],
    settings: str,
    pieces: dict[str, float] | None = None,
) -> str:
    """Return the whole report as markdown."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        f"- Date: {now}",
        f"- Versions: {_versions()}",
        f"- Machine: {_machine()}",
        f"- Settings: {settings}",
        "",
        "## Targets",
        "",
        "Judged on instruction counts (deterministic); the wall-clock ratio of the same "
        "pair (wrk req/s for servers, ns per record for factories; medians) is beside it. "
        "A server ratio is how many requests of the configuration fit in the cost of one "
        "of the reference's; a record ratio is ours over plain `LogRecord`.",
        "",
        *_targets_table(targets),
        "",
    ]
    if counts:
        lines += [
            "## Instructions per request (callgrind)",
            "",
            "Every thread of the server process, counted from a zeroed counter over the "
            "requests of one keep-alive connection, after a warm-up.",
            "",
            *_count_table(counts, descriptions),
            "",
        ]
    if records:
        lines += [
            "## Instructions per record (callgrind)",
            "",
            "One `logger.info(...)` to a handler that drops the record: findCaller, the "
            "factory, LogRecord and handler dispatch.",
            "",
            *_record_count_table(records),
            "",
        ]
    if pieces:
        lines += [
            "## The middleware's hot path, piece by piece (callgrind)",
            "",
            "Each piece alone, called in a loop on one resolved request (`bench/pieces.py`): "
            "the profile that shows where a request's instructions go.",
            "",
            "| piece | instructions/call |",
            "|---|--:|",
            *(f"| {name} | {value:,.0f} |" for name, value in pieces.items()),
            "",
        ]
    if summaries:
        lines += [
            "## Hello app under load (wrk)",
            "",
            "Median over rounds of each round's req/s; ratios are medians of per-round ratios "
            "to bare measured in the same round. CPU µs/req is the server process's "
            "user + system time (all threads) during the measured run, per completed request.",
            "",
            *_server_table(summaries, descriptions),
            "",
        ]
    if factories:
        lines += [
            "## Record factories (wall clock)",
            "",
            "Nanoseconds per `logger.info(...)` call to a handler that discards the record; "
            "delta is the median over repeats of the difference to plain `logging.LogRecord` "
            "in the same repeat.",
            "",
            *_factory_table(factories),
            "",
        ]
    return "\n".join(lines)
