"""Short request ids from OpenTelemetry traces in every log line of an aiohttp server."""

from ._client import client_trace_config
from ._context import REQUEST_ID_KEY, current_request_id, current_trace_id, request_id
from ._ids import request_id_from_span_id
from ._version import __version__
from .access_log import RequestIdAccessLogger
from .compat import (
    RequestIdContextAccessLogger,
    request_id_middleware,
    setup_logging_request_id_prefix,
)
from .instrumentor import RequestIdInstrumentor
from .middleware import RequestIdMiddleware
from .records import (
    LOG_FORMAT,
    RequestIdFilter,
    install_record_factory,
    uninstall_record_factory,
)
from .threads import bind_context, run_in_executor

__all__ = [
    "LOG_FORMAT",
    "REQUEST_ID_KEY",
    "RequestIdAccessLogger",
    "RequestIdContextAccessLogger",
    "RequestIdFilter",
    "RequestIdInstrumentor",
    "RequestIdMiddleware",
    "__version__",
    "bind_context",
    "client_trace_config",
    "current_request_id",
    "current_trace_id",
    "install_record_factory",
    "request_id",
    "request_id_from_span_id",
    "request_id_middleware",
    "run_in_executor",
    "setup_logging_request_id_prefix",
    "uninstall_record_factory",
]
