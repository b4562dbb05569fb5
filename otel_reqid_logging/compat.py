"""The names of aiohttp-request-id-logging 1.0.0, so that migrating is an import change.

``from aiohttp_request_id_logging import X`` becomes ``from otel_reqid_logging.compat
import X``. The names keep their meaning; the ids now come from OpenTelemetry spans.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler

from . import middleware as _middleware
from ._context import REQUEST_ID_KEY, request_id
from ._options import MiddlewareOptions
from .access_log import RequestIdAccessLogger
from .records import install_record_factory

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "ANCESTOR_HEADER_NAME",
    "FALLBACK_REQUEST_ID_KEY",
    "REQUEST_ID_KEY",
    "RequestIdAccessLogger",
    "RequestIdContextAccessLogger",
    "RequestIdKeyAlreadySetError",
    "RequestIdMiddleware",
    "noop",
    "request_id",
    "request_id_middleware",
    "setup_logging_request_id_prefix",
]

#: The response header the ancestor wrote, spelled as it spelled it.
ANCESTOR_HEADER_NAME = "X-Request-Id"
#: The plain string request key the ancestor also filled, for code older than RequestKey.
FALLBACK_REQUEST_ID_KEY = "request_id"
_PREFIX_FORMAT = "[req:{request_id}] "

#: The ancestor's older name of the access logger.
RequestIdContextAccessLogger = RequestIdAccessLogger

LogRequestStart = Callable[[web.Request, Handler], None]

# The ancestor's logger name, so that logging configured for its start line still applies.
_logger = logging.getLogger("aiohttp_request_id_logging")
_fallback_key_used = False


class RequestIdKeyAlreadySetError(Exception):
    """Raised when something other than this library put a request id on the request first.

    A second ``RequestIdMiddleware`` is no reason: it lets the first one handle the
    request. Another middleware or handler storing ``REQUEST_ID_KEY`` (or the string key
    ``"request_id"``) before this one runs is, as it was in aiohttp-request-id-logging.
    """

    def __init__(self, existing_request_id: str) -> None:
        super().__init__(
            f"the request already carries request id {existing_request_id!r}, set by "
            "something other than otel_reqid_logging; remove the code that sets "
            "REQUEST_ID_KEY or request['request_id'] before this middleware runs"
        )
        self.existing_request_id = existing_request_id


def noop(*args: Any, **kwargs: Any) -> None:
    """Do nothing: pass as ``log_request_start`` to log no start line."""


def setup_logging_request_id_prefix(prefix_format: str = _PREFIX_FORMAT) -> None:
    """Make every log record carry ``requestIdPrefix`` and the other ids; safe to repeat.

    ``%(requestIdPrefix)s`` is ``"[req:<id>] "`` inside a request and ``""`` outside.
    """
    if prefix_format != _PREFIX_FORMAT:
        raise ValueError(
            f"otel_reqid_logging writes requestIdPrefix only as {_PREFIX_FORMAT!r}, not as "
            f"{prefix_format!r}; name %(request_id)s in your log format to shape it yourself"
        )
    install_record_factory()


def _set_fallback_key(request: web.Request, value: str) -> None:
    """Store ``request["request_id"]`` without aiohttp's warning about string keys."""
    global _fallback_key_used  # noqa: PLW0603  (aiohttp warns once per process, so do we)
    if _fallback_key_used:
        request[FALLBACK_REQUEST_ID_KEY] = value
        return
    # aiohttp warns only the first time a process uses a given string key; silencing
    # that one assignment leaves every later one a plain dict write.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        request[FALLBACK_REQUEST_ID_KEY] = value
    _fallback_key_used = True


def _handler_name(handler: Handler) -> str:
    """Return ``module:function`` of a handler for the start line, or its repr."""
    module = getattr(handler, "__module__", None)
    name = getattr(handler, "__name__", None)
    return f"{module}:{name}" if module and name else repr(handler)


class RequestIdMiddleware(_middleware.RequestIdMiddleware):
    """The ancestor's middleware: ours, plus its start line, string key and header spelling.

    Besides what :class:`otel_reqid_logging.RequestIdMiddleware` does, it logs
    ``Processing GET / (module:handler)`` when a request starts, stores the id under
    ``request["request_id"]`` too, and names the header ``X-Request-Id``.
    """

    def __init__(
        self,
        *,
        log_request_start: LogRequestStart | None = None,
        log_function_name: bool = True,
        request_id_header_name: str | None = ANCESTOR_HEADER_NAME,
        no_fallback_request_id_key: bool = False,
        **options: Unpack[MiddlewareOptions],
    ) -> None:
        """Configure the middleware with the ancestor's options and a few of ours.

        ``log_request_start`` replaces the start line (``noop`` turns it off);
        ``log_function_name`` names the handler in it. ``request_id_header_name``
        names the response header (None turns it off). ``no_fallback_request_id_key``
        stores the id only under ``REQUEST_ID_KEY``. The rest are
        :class:`otel_reqid_logging.RequestIdMiddleware`'s options (but ``header_name``,
        which is ``request_id_header_name`` here).
        """
        if "header_name" in options:
            raise TypeError("name the header with request_id_header_name here, not header_name")
        merged: MiddlewareOptions = {**options, "header_name": request_id_header_name}
        super().__init__(**merged)
        self.log_function_name = log_function_name
        self._log_request_start = log_request_start or self.log_request_start
        self._fallback_key = not no_fallback_request_id_key

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run one request inside its span and ids, starting it the ancestor's way."""
        if self._passes_through(request):
            return await handler(request)
        existing = request.get(REQUEST_ID_KEY)
        if existing is None and self._fallback_key:
            existing = request.get(FALLBACK_REQUEST_ID_KEY)
        if existing is not None:
            raise RequestIdKeyAlreadySetError(existing)
        return await super().__call__(request, partial(self._start, handler))

    async def _start(self, handler: Handler, request: web.Request) -> web.StreamResponse:
        """Store the string key and log the start line, inside the request's ids."""
        if self._fallback_key:
            _set_fallback_key(request, request[REQUEST_ID_KEY])
        self._log_request_start(request, handler)
        return await handler(request)

    def log_request_start(self, request: web.Request, handler: Handler) -> None:
        """Log ``Processing GET / (module:handler)``; override it to log another line."""
        if self.log_function_name:
            _logger.info(
                "Processing %s %s (%s)", request.method, request.path, _handler_name(handler)
            )
        else:
            _logger.info("Processing %s %s", request.method, request.path)


def request_id_middleware(
    *, log_function_name: bool = True, log_request_start: bool = True
) -> RequestIdMiddleware:
    """Make the middleware as the ancestor's pre-1.0 function did (a bool start-line switch)."""
    return RequestIdMiddleware(
        log_function_name=log_function_name,
        log_request_start=None if log_request_start else noop,
    )
