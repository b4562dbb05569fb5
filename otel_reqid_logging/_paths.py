"""Where the local OTLP-JSON-lines span file lives; shared by the exporter and the lookup."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DEFAULT_SPANS_FILE", "SPANS_FILE_ENV", "spans_file"]

SPANS_FILE_ENV = "OTEL_REQID_SPANS_FILE"
DEFAULT_SPANS_FILE = "spans.jsonl"


def spans_file(environ: Mapping[str, str]) -> str:
    """Return the span file path that `environ` selects, so writer and reader agree."""
    return environ.get(SPANS_FILE_ENV) or DEFAULT_SPANS_FILE
