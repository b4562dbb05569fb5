"""The embedded default span exporter: OTLP JSON lines appended to a local file.

A thin subclass of the official ``opentelemetry-exporter-otlp-json-file`` exporter that
takes its path from ``OTEL_REQID_SPANS_FILE`` (default ``spans.jsonl``), so that
``opentelemetry-instrument`` (``OTEL_TRACES_EXPORTER=otel_reqid_file``), the programmatic
setup and ``otel-reqid-logging lookup`` all agree on the file. It comes with the ``sdk`` extra.
"""

from __future__ import annotations

import os

from ._extras import MissingExtraError
from ._options import spans_file

try:
    from opentelemetry.exporter.otlp.json.file.trace_exporter import FileSpanExporter
except ImportError as error:
    raise MissingExtraError("The local span file exporter", "sdk", error) from None

__all__ = ["SpansFileExporter"]


class SpansFileExporter(FileSpanExporter):
    """Append spans as OTLP JSON lines to ``path``, or to the file the environment names."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(path if path is not None else spans_file())
