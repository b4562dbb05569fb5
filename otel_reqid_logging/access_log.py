"""The aiohttp access log line, carrying the ids of the request it describes."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.web_log import AccessLogger

from ._context import REQUEST_IDS_KEY
from .records import _attributes_for

__all__ = ["RequestIdAccessLogger", "log_with_ids"]


def log_with_ids(
    access_logger: AccessLogger,
    request: web.BaseRequest,
    response: web.StreamResponse,
    time: float,
) -> None:
    """Write ``access_logger``'s line for one request, with the request's ids on the record.

    aiohttp writes the access line after the middlewares have returned, when the
    ContextVars of the request are already reset, so the ids are read from the request.
    """
    logger = access_logger.logger
    try:
        extra: dict[str, object] = {}
        values = []
        for key, value in access_logger._format_line(request, response, time):
            values.append(value)
            if isinstance(key, str):
                extra[key] = value
            else:
                group, name = key
                fields = extra.setdefault(group, {})
                fields[name] = value  # type: ignore[index]
        # Built by hand rather than with ``extra=``: makeRecord refuses extra keys that
        # the record factory has already set. It also skips findCaller, which would only
        # name aiohttp's own file.
        record = logger.makeRecord(
            logger.name,
            logging.INFO,
            __file__,
            0,
            access_logger._log_format % tuple(values),
            (),
            None,
        )
        record.__dict__.update(extra)
        record.__dict__.update(_attributes_for(request.get(REQUEST_IDS_KEY)))
        logger.handle(record)
    except Exception:
        logger.exception("Error in logging")


class RequestIdAccessLogger(AccessLogger):
    """aiohttp's AccessLogger whose records carry the request's ids.

    The ids become record attributes (for JSON formatters and for formats such as
    ``%(request_id)s``) whether or not the record factory is installed. Use it with
    ``web.run_app(app, access_log_class=RequestIdAccessLogger)``.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write the access line of one request with its ids."""
        log_with_ids(self, request, response, time)
