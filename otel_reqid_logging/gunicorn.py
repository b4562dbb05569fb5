"""gunicorn settings: tracing set up in every worker, and the ids in every log line.

Run an aiohttp app with it as gunicorn's config::

    gunicorn -c python:otel_reqid_logging.gunicorn -w 3 app:app

or take the pieces into your own ``gunicorn.conf.py``::

    from otel_reqid_logging.gunicorn import accesslog, logging_config, post_fork, worker_class

    logconfig_dict = logging_config(json=True)

``post_fork`` configures tracing in each worker, after the fork: an exporter's thread
and its connections, made in the master, would not survive it. That holds with
``--preload`` too, which imports the app in the master: the app module must then not
configure tracing at import, and the library wires each application when its worker
starts it, so nothing else changes.
"""

from __future__ import annotations

import logging
from typing import Any

from .export import configure_tracing
from .instrumentor import RequestIdInstrumentor
from .records import LOG_FORMAT

__all__ = ["accesslog", "logconfig_dict", "logging_config", "post_fork", "worker_class"]

#: aiohttp's own gunicorn worker.
worker_class = "aiohttp.GunicornWebWorker"
#: aiohttp's worker writes access lines only when gunicorn has an access log; "-" is stdout.
accesslog = "-"

# What a JSON line leaves out: the record's own internals, and the id attributes that
# only repeat request_id / trace_id / span_id under other names for text formats.
_JSON_LEAVES_OUT = (
    "requestIdPrefix",
    "otelTraceID",
    "otelSpanID",
    "otelTraceSampled",
    "otelServiceName",
)
_JSON_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s "
    "%(request_id)s %(trace_id)s %(span_id)s"
)


def logging_config(
    *, json: bool = False, filename: str | None = None, level: str | None = None
) -> dict[str, Any]:
    """A ``logconfig_dict`` in which handler lines and access lines carry the ids.

    Text lines use the library's ``LOG_FORMAT``; ``json=True`` writes one JSON object per
    line (python-json-logger's ``JsonFormatter``) with ``request_id``, ``trace_id`` and
    ``span_id`` fields. Lines go to stdout, or appended to ``filename``. Each handler
    has a ``RequestIdFilter``, so that lines gunicorn's master writes, where no
    record factory runs, format too. ``level`` is a level name in any case (gunicorn's
    own ``--log-level`` spells them ``info``, ``debug``) for the root logger and
    gunicorn's error log; None leaves gunicorn's error log at ``--log-level`` and the
    root logger at INFO.
    """
    root_level = "INFO" if level is None else _level_name(level)
    if json:
        try:
            from pythonjsonlogger.core import RESERVED_ATTRS  # noqa: PLC0415 (optional)
        except ImportError as error:
            message = "logging_config(json=True) needs python-json-logger"
            raise ImportError(f"{message}: pip install python-json-logger") from error
        formatter: dict[str, Any] = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": _JSON_FORMAT,
            "reserved_attrs": [*RESERVED_ATTRS, *_JSON_LEAVES_OUT],
        }
    else:
        formatter = {"format": LOG_FORMAT}
    handler: dict[str, Any] = {"formatter": "ids", "filters": ["ids"]}
    if filename is None:
        handler |= {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}
    else:
        handler |= {"class": "logging.FileHandler", "filename": filename}
    own: dict[str, Any] = {"handlers": ["ids"], "propagate": False}
    # gunicorn sets its error log's level from --log-level before it applies this
    # config; a logger entry without a level keeps it.
    error_log = own if level is None else {**own, "level": root_level}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"ids": {"()": "otel_reqid_logging.RequestIdFilter"}},
        "formatters": {"ids": formatter},
        "handlers": {"ids": handler},
        "root": {"level": root_level, "handlers": ["ids"]},
        "loggers": {"gunicorn.error": error_log, "gunicorn.access": {**own, "level": "INFO"}},
    }


def _level_name(level: object) -> str:
    """The upper-case name dictConfig needs, or a ValueError naming the option."""
    name = level.strip().upper() if isinstance(level, str) else ""
    # getLevelName maps a known name to its number, and anything else to a string.
    if not isinstance(logging.getLevelName(name), int):
        raise ValueError(
            "logging_config: level must be a logging level name such as INFO or debug, "
            f"got {level!r}"
        )
    return name


#: Text lines on stdout; assign ``logging_config(json=True)`` for JSON lines.
logconfig_dict = logging_config()


def post_fork(server: object, worker: object) -> None:
    """gunicorn's hook in each new worker: tracing from the OTEL_* settings, then the library.

    Spans go over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else to the local span
    file. Every application the worker starts gets the middleware, and its access log
    and log records the ids.
    """
    configure_tracing(set_global=True)
    RequestIdInstrumentor().instrument()
