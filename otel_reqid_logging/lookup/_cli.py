"""`otel-reqid-logging lookup`: from the id in a log line to the trace."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
from yarl import URL

from .._options import SPANS_FILE_ENV, spans_file
from ._backend import Backend, find
from ._errors import COMMON_REASONS, BackendError, TraceNotFoundError
from ._html import render_html
from ._logs import LogFilesError, find_log_lines, log_files, print_log_lines
from ._model import Trace
from ._query import Query, QueryError, parse_query, shown
from ._render import render_trace, terminal_for
from ._waterfall import RequestLogs
from ._window import parse_duration
from .file import FileBackend
from .jaeger import DEFAULT_JAEGER_URL, JaegerBackend
from .phoenix import DEFAULT_PHOENIX_PROJECT, DEFAULT_PHOENIX_URL, PhoenixBackend

__all__ = [
    "EXIT_BACKEND_ERROR",
    "EXIT_FOUND",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
    "run",
]

EXIT_FOUND = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_BACKEND_ERROR = 3

PROG = "otel-reqid-logging lookup"
BACKENDS = ("file", "jaeger", "phoenix")
# Each option's environment variable; `_defaults` is the only reader of the environment.
ENVIRONMENT = {
    "backend": "OTEL_REQID_LOOKUP_BACKEND",
    "file": SPANS_FILE_ENV,
    "jaeger_url": "OTEL_REQID_JAEGER_URL",
    "jaeger_ui_url": "OTEL_REQID_JAEGER_UI_URL",
    "phoenix_url": "OTEL_REQID_PHOENIX_URL",
    "phoenix_project": "OTEL_REQID_PHOENIX_PROJECT",
    # Not OTEL_SERVICE_NAME: that names the app, and a line pasted from another service's
    # log must still find its trace, so only the lookup's own setting narrows the search.
    "service": "OTEL_REQID_LOOKUP_SERVICE",
    "lookback": "OTEL_REQID_LOOKUP_LOOKBACK",
}


def run(argv: list[str] | None = None) -> int:
    """Run the lookup with `argv` (the words after `lookup`); return the exit code."""
    parser = _parser(_defaults(os.environ))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # argparse has printed usage or help already.
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        query = _checked_query(args)
        with_logs = print_log_lines(args.logs, query)
    except (QueryError, LogFilesError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        traces = asyncio.run(_lookup(args, query))
    except TraceNotFoundError as missing:
        reasons = "".join(f"\n  - {reason}" for reason in (*missing.reasons, *COMMON_REASONS))
        print(f"{PROG}: {missing.message}\nLikely reasons:{reasons}", file=sys.stderr)
        with_logs(None)
        return EXIT_NOT_FOUND
    except BackendError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_BACKEND_ERROR
    # A link only where it leads somewhere: to the Jaeger searched, or to a UI named.
    jaeger = args.jaeger_url if args.backend == "jaeger" else None
    return _print(traces, query, args, jaeger_ui_url=args.jaeger_ui_url or jaeger)


def _checked_query(args: argparse.Namespace) -> Query:
    """Parse the query and check that the options can answer it; settle the backend."""
    _check_environment_values(args)
    args.backend = _chosen_backend(args)
    if args.backend not in BACKENDS:
        raise QueryError(
            f"{ENVIRONMENT['backend']} must be one of {', '.join(BACKENDS)}, "
            f"not {shown(args.backend)}"
        )
    return parse_query(" ".join(args.query))


def _chosen_backend(args: argparse.Namespace) -> str:
    """--backend if given; else the store whose address option was given; else the default.

    `lookup ID --jaeger-url URL` means Jaeger: asking the local file instead would answer
    "not found" about a store the user never meant.
    """
    named = sorted(args.named_stores)
    if args.backend_given:
        return str(args.backend)
    if len(named) > 1:
        raise QueryError(
            f"options of two trace stores given ({', '.join(named)}); choose one with --backend"
        )
    if named:
        return str(named[0])
    return str(args.backend)


class _Given(argparse.Action):
    """Store the value, and note that the command line (not a default) set it.

    `const` names the trace store the option belongs to, or is None for --backend itself.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        if self.const is None:
            namespace.backend_given = True
        else:
            namespace.named_stores = {*namespace.named_stores, self.const}


@dataclass(frozen=True)
class _FromEnvironment:
    """A default taken from an environment variable, checked only when no flag replaces it.

    argparse would check a string default with the flag's type and blame the flag
    (``argument --lookback: ...``) for a value the user set in a variable.
    """

    variable: str
    text: str


def _check_environment_values(args: argparse.Namespace) -> None:
    """Turn the defaults still coming from the environment into values, or a QueryError."""
    for option in ENVIRONMENT:
        value = getattr(args, option)
        if not isinstance(value, _FromEnvironment):
            continue
        check = _CHECKS.get(option, str)
        try:
            setattr(args, option, check(value.text))
        except (argparse.ArgumentTypeError, ValueError) as error:
            raise QueryError(f"{value.variable}={shown(value.text)}: {error}") from None


def _defaults(environ: Mapping[str, str]) -> dict[str, object]:
    defaults: dict[str, object] = {
        "backend": "file",
        "file": spans_file(environ),
        "jaeger_url": DEFAULT_JAEGER_URL,
        "jaeger_ui_url": None,
        "phoenix_url": DEFAULT_PHOENIX_URL,
        "phoenix_project": DEFAULT_PHOENIX_PROJECT,
        "service": None,
        "lookback": "24h",
    }
    for option, variable in ENVIRONMENT.items():
        if environ.get(variable):
            defaults[option] = _FromEnvironment(variable, environ[variable])
    return defaults


def _parser(defaults: Mapping[str, object]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Find the trace of a request from the id in one of its log lines: a request id "
            "(req:k3v9q2xd), a 32-hex trace id, or the whole pasted log line."
        ),
        epilog=(
            "exit codes: 0 found, 1 not found, 2 bad input, 3 trace store unreachable. "
            "Defaults come from: "
            + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in ENVIRONMENT.items())
        ),
    )
    parser.add_argument("query", nargs="+", metavar="ID_OR_LOG_LINE")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        action=_Given,
        help="trace store to ask (default: the one whose --*-url is given, else %(default)s)",
    )
    parser.add_argument("--file", metavar="PATH", help="OTLP JSON lines span file")
    parser.add_argument(
        "--jaeger-url",
        metavar="URL",
        type=_url,
        action=_Given,
        const="jaeger",
        help="Jaeger query service",
    )
    parser.add_argument(
        "--jaeger-ui-url",
        metavar="URL",
        type=_url,
        help="Jaeger UI for the printed link (default: --jaeger-url when Jaeger is searched)",
    )
    parser.add_argument(
        "--phoenix-url",
        metavar="URL",
        type=_url,
        action=_Given,
        const="phoenix",
        help="Phoenix server",
    )
    parser.add_argument("--phoenix-project", metavar="NAME", help="Phoenix project")
    parser.add_argument(
        "--service",
        metavar="NAME",
        help="search by request id in this service only (Jaeger; default: every service)",
    )
    parser.add_argument(
        "--lookback",
        type=_lookback,
        metavar="DURATION",
        help="how far back to search, like 30m, 6h, 2d (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=_timeout, default=10.0, metavar="SECONDS", help="per request"
    )
    parser.add_argument(
        "--logs",
        action="append",
        default=[],
        metavar="PATH",
        help="the request's log lines from these files, each under its span (repeatable; globs)",
    )
    parser.add_argument(
        "--width",
        type=_width,
        metavar="N",
        help="columns of the waterfall (default: $COLUMNS, else the terminal's, else 120)",
    )
    parser.add_argument(
        "--html",
        type=_html_path,
        metavar="PATH",
        help="also write the waterfall as one self-contained HTML page to PATH",
    )
    parser.set_defaults(**defaults, backend_given=False, named_stores=frozenset())
    return parser


def _lookback(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _url(text: str) -> str:
    """An http(s) URL with a host: anything else could never reach a trace store."""
    try:
        url = URL(text.strip())
        host = url.host
    except ValueError:
        host = None
    if host is None or url.scheme not in {"http", "https"}:
        raise argparse.ArgumentTypeError(
            "expected an http:// or https:// URL with a host, like http://localhost:16686"
        )
    return text.strip()


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 600:
        raise argparse.ArgumentTypeError("expected seconds between 0 and 600")
    return seconds


# How an option's value from the environment is checked: as its flag checks it.
_CHECKS: dict[str, Callable[[str], object]] = {
    "jaeger_url": _url,
    "jaeger_ui_url": _url,
    "phoenix_url": _url,
    "lookback": _lookback,
}


async def _lookup(args: argparse.Namespace, query: Query) -> list[Trace]:
    if args.backend == "file":
        return await find(FileBackend(path=args.file), query)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        backend: Backend
        if args.backend == "jaeger":
            backend = JaegerBackend(
                session=session, url=args.jaeger_url, service=args.service, lookback=args.lookback
            )
        else:
            backend = PhoenixBackend(
                session=session,
                url=args.phoenix_url,
                project=args.phoenix_project,
                lookback=args.lookback,
            )
        return await find(backend, query)


def _width(text: str) -> int:
    try:
        width = int(text)
    except ValueError:
        width = 0
    if not 40 <= width <= 1000:
        raise argparse.ArgumentTypeError("expected columns between 40 and 1000")
    return width


def _html_path(text: str) -> Path:
    """A file to write: its directory must exist now, before the lookup runs."""
    path = Path(text)
    if path.is_dir() or not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write a file at {text!r}")
    return path


def _print(
    traces: list[Trace], query: Query, args: argparse.Namespace, *, jaeger_ui_url: str | None
) -> int:
    """The waterfall of the newest trace (its log lines on it with --logs); --html too."""
    logs = None
    if args.logs:
        try:
            paths = log_files(args.logs)
            lines, left_out = find_log_lines(paths, traces[0], query)
        except LogFilesError as error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
        else:
            logs = RequestLogs(lines, left_out, len(paths))
    terminal = terminal_for(sys.stdout, os.environ, args.width)
    text = render_trace(traces[0], jaeger_ui_url=jaeger_ui_url, logs=logs, terminal=terminal)
    print(text, end="")
    if len(traces) > 1:
        others = ", ".join(trace.trace_id for trace in traces[1:])
        print(f"\n{len(traces) - 1} older trace(s) also match {query.describe()}: {others}")
    if args.html is not None:
        page = render_html(traces[0], jaeger_ui_url=jaeger_ui_url, logs=logs)
        try:
            args.html.write_text(page, encoding="utf-8")
        except OSError as error:
            print(
                f"{PROG}: error: cannot write {str(args.html)!r}: {error.strerror}", file=sys.stderr
            )
            return EXIT_USAGE
        print(f"\nHTML page: {args.html}")
    return EXIT_FOUND
