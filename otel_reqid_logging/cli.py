"""The ``otel-reqid-logging`` command: ``demo`` and ``lookup``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._version import __version__
from .lookup._cli import run as run_lookup

__all__ = ["console_main", "main"]

USAGE = """usage: otel-reqid-logging [--version] {demo,lookup} ...

  demo     serve a few concurrent requests, show their log lines, look one up
  lookup   find the trace of a request id, a trace id or a pasted log line

Run `otel-reqid-logging COMMAND --help` for a command's options.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a sub-command; return the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "lookup":
        return run_lookup(rest)
    if command == "--version":
        print(f"otel-reqid-logging {__version__}")
        return 0
    if command == "demo":
        # Imported on use: the demo needs the SDK, which `lookup` does not.
        from .demo import main as run_demo  # noqa: PLC0415

        return run_demo(rest)
    if command not in {"", "-h", "--help"}:
        print(f"otel-reqid-logging: unknown command {command[:80]!r}", file=sys.stderr)
    print(USAGE, end="", file=sys.stdout if command in {"-h", "--help"} else sys.stderr)
    return 0 if command in {"-h", "--help"} else 2


def console_main() -> None:
    """The console script: exit with what ``main`` returns."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
