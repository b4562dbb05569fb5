"""The record factories' side of ``bench.callgrind.count_records``, run under callgrind.

``python -m bench.record_counts N`` reads commands on stdin, one a line:
``prepare FACTORY PLACE`` installs the factory, enters the place, makes a few records to
warm up and answers ``ready``; ``run`` makes N records (none for factory ``none``) and
answers ``done``; ``quit`` answers ``bye``. The parent zeroes callgrind's counters
between ``ready`` and ``run`` and dumps them after ``done``.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Sequence
from contextlib import ExitStack

from otel_reqid_logging import install_record_factory, uninstall_record_factory

from .records import emit, factories, make_logger, places

__all__ = ["main"]

_WARMUP_RECORDS = 200


def _serve(number: int) -> None:
    made = factories()
    where = places()
    logger = make_logger()
    say = sys.stdout
    with ExitStack() as stack:
        for line in sys.stdin:
            command = line.split()
            if command[0] == "prepare":
                stack.close()
                factory, place = command[1:]
                uninstall_record_factory()
                logging.setLogRecordFactory(
                    logging.LogRecord if factory == "none" else made[factory]
                )
                if factory == "ours":
                    # As the library runs: its Logger.makeRecord too, not only its factory.
                    logging.setLogRecordFactory(logging.LogRecord)
                    install_record_factory()
                stack.enter_context(where[place]())
                records = 0 if factory == "none" else number
                emit(logger, min(records, _WARMUP_RECORDS))
                say.write("ready\n")
            elif command[0] == "run":
                emit(logger, records)
                say.write("done\n")
            else:
                say.write("bye\n")
                say.flush()
                return
            say.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the commands, making ``N`` records per case."""
    (number,) = argv if argv is not None else sys.argv[1:]
    contextvars.copy_context().run(_serve, int(number))


if __name__ == "__main__":
    main()
