"""The results: per-configuration medians, the speed targets, and the markdown tables."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version

from .records import FactoryResult

__all__ = [
    "FACTORY_TARGET_NS",
    "SERVER_TARGETS",
    "Run",
    "Summary",
    "Target",
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
    """A speed target: the median ratio to ``reference`` must reach ``minimum``."""

    reference: str
    minimum: float


# Each ratio is taken against a configuration measured in the same round.
SERVER_TARGETS: dict[str, Target] = {
    "ours_span": Target("bare", 0.60),
    "ours_ids": Target("bare", 0.90),
    "ours_on_otel": Target("otel_server", 0.95),
}
FACTORY_TARGET_NS = 400.0


@dataclass(frozen=True)
class Summary:
    """The medians of one configuration over all rounds."""

    configuration: str
    requests_per_second: float
    ratio_to_bare: float | None
    cpu_us_per_request: float
    requests: int
    non_2xx: int
    socket_errors: int
    log_lines_per_request: float
    target: Target | None
    ratio_to_reference: float | None

    @property
    def passed(self) -> bool | None:
        """Whether the target holds; None without a target or its reference."""
        if self.target is None or self.ratio_to_reference is None:
            return None
        return self.ratio_to_reference >= self.target.minimum


def _median_ratio(runs: Sequence[Run], reference: Sequence[Run]) -> float | None:
    """Median over rounds of the ratio of req/s to the reference's req/s of that round."""
    by_round = {run.round: run.requests_per_second for run in reference}
    ratios = [
        run.requests_per_second / by_round[run.round] for run in runs if by_round.get(run.round)
    ]
    return statistics.median(ratios) if ratios else None


def summarize(runs: Sequence[Run], order: Sequence[str]) -> list[Summary]:
    """Reduce the runs to one summary per configuration, in ``order``."""
    by_configuration: dict[str, list[Run]] = {}
    for run in runs:
        by_configuration.setdefault(run.configuration, []).append(run)
    summaries = []
    for name in order:
        own = by_configuration.get(name)
        if not own:
            continue
        target = SERVER_TARGETS.get(name)
        requests = sum(run.requests for run in own)
        summaries.append(
            Summary(
                configuration=name,
                requests_per_second=statistics.median(run.requests_per_second for run in own),
                ratio_to_bare=_median_ratio(own, by_configuration.get("bare", [])),
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
                target=target,
                ratio_to_reference=None
                if target is None
                else _median_ratio(own, by_configuration.get(target.reference, [])),
            )
        )
    return summaries


def _result(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: ""}[passed]


def _versions() -> str:
    names = ("aiohttp", "opentelemetry-api", "opentelemetry-sdk", "opentelemetry-instrumentation")
    packages = ", ".join(f"{name} {version(name)}" for name in names)
    return f"Python {platform.python_version()}, {packages}"


def _machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'cpu'}), "
        f"{platform.system()} {platform.release()}"
    )


def _server_table(summaries: Sequence[Summary], descriptions: dict[str, str]) -> list[str]:
    lines = [
        "| configuration | req/s (median) | ratio to bare | CPU µs/req | requests | non-2xx "
        "| socket errors | log lines/req | target | result |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for summary in summaries:
        ratio = "" if summary.ratio_to_bare is None else f"{summary.ratio_to_bare:.2f}"
        target = ""
        if summary.target is not None:
            reached = summary.ratio_to_reference
            measured = "n/a" if reached is None else f"{reached:.2f}"
            target = f"{measured} of {summary.target.reference} (>= {summary.target.minimum:.2f})"
        lines.append(
            f"| `{summary.configuration}`: {descriptions.get(summary.configuration, '')} "
            f"| {summary.requests_per_second:,.0f} | {ratio} "
            f"| {summary.cpu_us_per_request:.0f} | {summary.requests:,} | {summary.non_2xx} "
            f"| {summary.socket_errors} | {summary.log_lines_per_request:.2f} "
            f"| {target} | {_result(summary.passed)} |"
        )
    return lines


def _factory_table(results: Sequence[FactoryResult]) -> list[str]:
    lines = [
        "| record factory | outside a request: ns/record | delta | inside a request: ns/record "
        "| delta | target | result |",
        "|---|--:|--:|--:|--:|---|---|",
    ]
    for result in results:
        target = result_text = ""
        if result.name == "ours":
            worst = max(result.outside_delta_ns, result.inside_delta_ns)
            target = f"<= +{FACTORY_TARGET_NS:.0f} ns"
            result_text = _result(worst <= FACTORY_TARGET_NS)
        lines.append(
            f"| {result.name} | {result.outside_ns:,.0f} | {result.outside_delta_ns:+,.0f} "
            f"| {result.inside_ns:,.0f} | {result.inside_delta_ns:+,.0f} | {target} "
            f"| {result_text} |"
        )
    return lines


def render(
    *,
    summaries: Sequence[Summary],
    descriptions: dict[str, str],
    factories: Sequence[FactoryResult],
    settings: str,
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
    ]
    if summaries:
        lines += [
            "## Hello app under load",
            "",
            "Median over rounds of each round's req/s; ratios are medians of per-round ratios "
            "to the reference measured in the same round. CPU µs/req is the server process's "
            "user + system time (all threads) during the measured run, per completed request.",
            "",
            *_server_table(summaries, descriptions),
            "",
        ]
    if factories:
        lines += [
            "## Record factories",
            "",
            "Nanoseconds per `logger.info(...)` call to a handler that discards the record "
            "(findCaller, the factory, LogRecord and handler dispatch); delta is the median "
            "over repeats of the difference to plain `logging.LogRecord` in the same repeat.",
            "",
            *_factory_table(factories),
            "",
        ]
    return "\n".join(lines)
