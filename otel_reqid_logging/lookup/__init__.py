"""Find the trace of a request from the id in one of its log lines, in several trace stores."""

from ._backend import Backend, find
from ._errors import BackendError, TraceNotFoundError
from ._model import Span, Trace, parse_resource_spans
from ._query import Query, QueryError, parse_query
from ._render import render_trace
from .file import FileBackend
from .jaeger import JaegerBackend
from .phoenix import PhoenixBackend

__all__ = [
    "Backend",
    "BackendError",
    "FileBackend",
    "JaegerBackend",
    "PhoenixBackend",
    "Query",
    "QueryError",
    "Span",
    "Trace",
    "TraceNotFoundError",
    "find",
    "parse_query",
    "parse_resource_spans",
    "render_trace",
]
