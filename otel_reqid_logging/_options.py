"""The instrumentor's options, and the one place that reads their environment variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ._ids import DEFAULT_ID_LENGTH, MAX_INCOMING_ID_LENGTH
from .middleware import DEFAULT_HEADER_NAME, RequestIdMiddleware

__all__ = ["ENVIRONMENT_VARIABLES", "Options", "resolve_options"]

# Name -> what it sets; the README's table is this one.
ENVIRONMENT_VARIABLES = {
    "OTEL_REQID_HEADER": "response header name; empty or 'none' sends no header",
    "OTEL_REQID_ID_LENGTH": "characters in a request id, 4 to 12 (default 8)",
    "OTEL_REQID_ADOPT_INCOMING_ID": "'true' keeps a client's allowlisted X-Request-ID",
    "OTEL_REQID_SENTRY": "'true', 'false' or 'auto' (default): tag Sentry events",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """What ``RequestIdInstrumentor`` sets up, and how the middleware behaves."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    header_name: str | None = DEFAULT_HEADER_NAME
    id_length: int = DEFAULT_ID_LENGTH
    adopt_incoming_id: bool = False
    incoming_header_name: str | None = None
    max_incoming_id_length: int = MAX_INCOMING_ID_LENGTH
    sentry: bool | None = None
    record_factory: bool = True
    access_log: bool = True

    def make_middleware(self) -> RequestIdMiddleware:
        """Build the middleware these options describe."""
        return RequestIdMiddleware(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            header_name=self.header_name,
            id_length=self.id_length,
            adopt_incoming_id=self.adopt_incoming_id,
            incoming_header_name=self.incoming_header_name,
            max_incoming_id_length=self.max_incoming_id_length,
            sentry=self.sentry,
        )


_FIELDS = {field.name for field in dataclasses.fields(Options)}


def _flag(name: str, raw: str, *, allow_auto: bool = False) -> bool | None:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    if allow_auto and value in {"", "auto"}:
        return None
    expected = "true, false or auto" if allow_auto else "true or false"
    raise ValueError(f"{name} must be {expected}, got {raw!r}")


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if "OTEL_REQID_HEADER" in environ:
        header = environ["OTEL_REQID_HEADER"].strip()
        found["header_name"] = None if header.lower() in {"", "none"} else header
    if "OTEL_REQID_ID_LENGTH" in environ:
        raw = environ["OTEL_REQID_ID_LENGTH"]
        try:
            found["id_length"] = int(raw)
        except ValueError:
            raise ValueError(f"OTEL_REQID_ID_LENGTH must be a number, got {raw!r}") from None
    if "OTEL_REQID_ADOPT_INCOMING_ID" in environ:
        raw = environ["OTEL_REQID_ADOPT_INCOMING_ID"]
        found["adopt_incoming_id"] = _flag("OTEL_REQID_ADOPT_INCOMING_ID", raw)
    if "OTEL_REQID_SENTRY" in environ:
        raw = environ["OTEL_REQID_SENTRY"]
        found["sentry"] = _flag("OTEL_REQID_SENTRY", raw, allow_auto=True)
    return found


def resolve_options(given: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Options:
    """Merge keyword options over the environment; unknown names are an error."""
    unknown = sorted(set(given) - _FIELDS)
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}"
        )
    settings = _from_environment(os.environ if environ is None else environ)
    settings.update(given)
    return Options(**settings)
