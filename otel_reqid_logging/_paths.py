"""Where the local OTLP-JSON-lines span file lives: the names, kept where importers find them.

The environment is read in ``_options``; this module only re-exports its span-file names.
"""

from __future__ import annotations

from ._options import DEFAULT_SPANS_FILE, SPANS_FILE_ENV, spans_file

__all__ = ["DEFAULT_SPANS_FILE", "SPANS_FILE_ENV", "spans_file"]
