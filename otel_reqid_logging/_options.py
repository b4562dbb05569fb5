"""The library's options: one frozen object, and the reader of the library's own variables.

``Options`` is what the middleware and the instrumentor are configured with: keyword
options over environment variables over defaults, validated once, here. Every variable the
middleware, the instrumentor and the span file path use is read by this module. Two
others read the environment, each for its own settings alone: ``export.py`` the standard
``OTEL_*`` exporter choice, and the lookup command the defaults of its flags (both take
the span file's path from ``spans_file`` here).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ._ids import DEFAULT_ID_LENGTH, MAX_ID_LENGTH, MAX_INCOMING_ID_LENGTH, MIN_ID_LENGTH

__all__ = [
    "DEFAULT_HEADER_NAME",
    "DEFAULT_SPANS_FILE",
    "ENVIRONMENT_VARIABLES",
    "EXCLUDED_URLS_ENV",
    "SPANS_FILE_ENV",
    "MiddlewareOptions",
    "Options",
    "compile_patterns",
    "header_from_environment",
    "otel_exclude_list",
    "otel_excluded_url_patterns",
    "resolve_options",
    "spans_file",
]

DEFAULT_HEADER_NAME = "X-Request-ID"
SPANS_FILE_ENV = "OTEL_REQID_SPANS_FILE"
DEFAULT_SPANS_FILE = "spans.jsonl"
EXCLUDED_URLS_ENV = "OTEL_REQID_EXCLUDED_URLS"
# OpenTelemetry's: the aiohttp-server variable when it is set at all, else the general one.
_OTEL_EXCLUDED_URLS_ENV = "OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS"
_OTEL_GENERAL_EXCLUDED_URLS_ENV = "OTEL_PYTHON_EXCLUDED_URLS"

# Name -> what it sets; docs/options.md's table is this one (a test compares them).
ENVIRONMENT_VARIABLES = {
    "OTEL_REQID_HEADER": "response header name; empty or 'none' sends no header",
    "OTEL_REQID_ID_LENGTH": "characters in a request id, 4 to 12 (default 8)",
    "OTEL_REQID_ADOPT_INCOMING_ID": "'true' keeps a client's allowlisted X-Request-ID",
    "OTEL_REQID_SENTRY": "'true', 'false' or 'auto' (default): tag Sentry events",
    "OTEL_REQID_TRACERESPONSE": "'true' sends the W3C traceresponse header (default false)",
    EXCLUDED_URLS_ENV: "comma-separated regexes of URLs to leave alone (no span, no access line)",
    _OTEL_EXCLUDED_URLS_ENV: "comma-separated regexes of URLs that get no span (OpenTelemetry's)",
    _OTEL_GENERAL_EXCLUDED_URLS_ENV: "the same, when the aiohttp-server variable is unset",
    SPANS_FILE_ENV: f"the local span file (default {DEFAULT_SPANS_FILE})",
}

# RFC 9110 token characters: anything else cannot be a header name.
_HEADER_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_INSTRUMENTOR_ONLY = frozenset({"record_factory", "access_log"})
# Set from the environment alone, never by a keyword option.
_ENVIRONMENT_ONLY = frozenset({"otel_excluded_urls"})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """How the middleware behaves, and what ``RequestIdInstrumentor`` sets up.

    ``excluded_urls`` is normalized to a tuple of patterns; the compiled matcher is
    ``url_excluded`` (None when nothing is excluded). ``otel_excluded_urls`` holds the
    patterns of OpenTelemetry's excluded-URL variables, as OpenTelemetry splits them;
    ``url_untraced`` matches them as OpenTelemetry does (None when there are none).
    """

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    header_name: str | None = DEFAULT_HEADER_NAME
    id_length: int = DEFAULT_ID_LENGTH
    adopt_incoming_id: bool = False
    incoming_header_name: str | None = None
    max_incoming_id_length: int = MAX_INCOMING_ID_LENGTH
    sentry: bool | None = None
    excluded_urls: str | Sequence[str] = ()
    traceresponse: bool = False
    record_factory: bool = True
    access_log: bool = True
    otel_excluded_urls: tuple[str, ...] = ()
    url_excluded: Callable[[str], bool] | None = dataclasses.field(
        init=False, default=None, repr=False, compare=False
    )
    url_untraced: Callable[[str], bool] | None = dataclasses.field(
        init=False, default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Refuse what cannot work, naming the option; normalize ``excluded_urls``."""
        provider = self.tracer_provider
        # Duck-typed as the middleware uses it: any object with get_tracer will do.
        if provider is not None and not callable(getattr(provider, "get_tracer", None)):
            raise TypeError(
                f"tracer_provider must be an OpenTelemetry TracerProvider or None, got {provider!r}"
            )
        meters = self.meter_provider
        if meters is not None and not callable(getattr(meters, "get_meter", None)):
            raise TypeError(
                f"meter_provider must be an OpenTelemetry MeterProvider or None, got {meters!r}"
            )
        for name in ("adopt_incoming_id", "traceresponse", "record_factory", "access_log"):
            _check_type(name, getattr(self, name), bool)
        if self.sentry is not None:
            _check_type("sentry", self.sentry, bool, "True, False or None")
        _check_type("id_length", self.id_length, int)
        _check_type("max_incoming_id_length", self.max_incoming_id_length, int)
        if not MIN_ID_LENGTH <= self.id_length <= MAX_ID_LENGTH:
            raise ValueError(
                f"id_length must be between {MIN_ID_LENGTH} and {MAX_ID_LENGTH}, "
                f"got {self.id_length}"
            )
        if not 1 <= self.max_incoming_id_length <= 1024:
            raise ValueError(
                "max_incoming_id_length must be between 1 and 1024, "
                f"got {self.max_incoming_id_length}"
            )
        for name in ("header_name", "incoming_header_name"):
            value = getattr(self, name)
            valid = isinstance(value, str) and _HEADER_TOKEN.fullmatch(value)
            if value is not None and not valid:
                raise ValueError(f"{name} must be an HTTP header name or None, got {value!r}")
        if self.adopt_incoming_id and not (self.incoming_header_name or self.header_name):
            raise ValueError("adopt_incoming_id needs incoming_header_name or header_name")
        patterns = _patterns(self.excluded_urls, "excluded_urls")
        object.__setattr__(self, "excluded_urls", patterns)
        object.__setattr__(self, "url_excluded", compile_patterns(patterns, "excluded_urls"))
        otel_patterns = tuple(self.otel_excluded_urls)
        object.__setattr__(self, "otel_excluded_urls", otel_patterns)
        object.__setattr__(
            self, "url_untraced", otel_exclude_list(otel_patterns, "otel_excluded_urls")
        )


class MiddlewareOptions(TypedDict, total=False):
    """The keyword options of ``RequestIdMiddleware``: those of ``Options`` it uses."""

    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None
    header_name: str | None
    id_length: int
    adopt_incoming_id: bool
    incoming_header_name: str | None
    max_incoming_id_length: int
    sentry: bool | None
    excluded_urls: str | Sequence[str]
    traceresponse: bool


_FIELDS = (
    frozenset(field.name for field in dataclasses.fields(Options) if field.init) - _ENVIRONMENT_ONLY
)
_MIDDLEWARE_FIELDS = _FIELDS - _INSTRUMENTOR_ONLY


def _check_type(name: str, value: object, kind: type, expected: str = "") -> None:
    # bool is an int: an id_length of True is a mistake, not 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{name} must be {expected or kind.__name__}, got {value!r}")


def _patterns(value: object, source: str) -> tuple[str, ...]:
    """Split a comma-separated string, or take a sequence, of regular expressions."""
    if isinstance(value, str):
        items: Sequence[object] = value.split(",")
    elif isinstance(value, Sequence):
        items = value
    else:
        raise TypeError(f"{source} must be a string or a sequence of strings, got {value!r}")
    patterns = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{source} must hold strings, got {item!r}")
        if item.strip():
            patterns.append(item.strip())
    return tuple(patterns)


def compile_patterns(patterns: tuple[str, ...], source: str) -> Callable[[str], bool] | None:
    """Return a test of whether any pattern ``re.search``-matches a text; None for none.

    A pattern that is not a regular expression is refused with ``source`` (the option or
    variable it came from) and the pattern itself in the message.
    """
    if not patterns:
        return None
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as error:
            raise ValueError(
                f"{source}: {pattern!r} is not a regular expression ({error})"
            ) from None
    try:
        # One search for all of them, as OpenTelemetry's exclusion lists do.
        search = re.compile("|".join(f"(?:{p})" for p in patterns)).search
    except re.error:
        # Patterns that only stand alone (inline global flags, repeated group names).
        searches = [regex.search for regex in compiled]
        return lambda text: any(found(text) is not None for found in searches)
    return lambda text: search(text) is not None


def otel_excluded_url_patterns(raw: str) -> tuple[str, ...]:
    """Split an excluded-URL variable as OpenTelemetry's ``parse_excluded_urls`` does.

    Every comma-separated item, stripped, empty ones included: OpenTelemetry joins them
    with ``|``, so an empty item (``"a,"``) matches every URL there, and so here.
    """
    return tuple(item.strip() for item in raw.split(",")) if raw else ()


def otel_exclude_list(patterns: tuple[str, ...], source: str) -> Callable[[str], bool] | None:
    """Return a test that matches as OpenTelemetry's ``ExcludeList.url_disabled`` does.

    One regular expression, the patterns joined with ``|`` as they are, searched in the
    text; None for no patterns. A pattern that does not compile is refused with ``source``.
    """
    if not patterns:
        return None
    try:
        search = re.compile("|".join(patterns)).search
    except re.error as error:
        # Name the pattern at fault where one fails alone; else they fail only together.
        culprit = next((p for p in patterns if not _compiles(p)), ",".join(patterns))
        raise ValueError(f"{source}: {culprit!r} is not a regular expression ({error})") from None
    return lambda text: search(text) is not None


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


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
        found["header_name"] = header_from_environment(environ)
    if "OTEL_REQID_ID_LENGTH" in environ:
        raw = environ["OTEL_REQID_ID_LENGTH"]
        try:
            id_length = int(raw)
        except ValueError:
            raise ValueError(f"OTEL_REQID_ID_LENGTH must be a number, got {raw!r}") from None
        # Checked here too, so that the message names the variable the user set.
        if not MIN_ID_LENGTH <= id_length <= MAX_ID_LENGTH:
            raise ValueError(
                f"OTEL_REQID_ID_LENGTH must be between {MIN_ID_LENGTH} and {MAX_ID_LENGTH}, "
                f"got {raw!r}"
            )
        found["id_length"] = id_length
    for variable, option in (
        ("OTEL_REQID_ADOPT_INCOMING_ID", "adopt_incoming_id"),
        ("OTEL_REQID_TRACERESPONSE", "traceresponse"),
    ):
        if variable in environ:
            found[option] = _flag(variable, environ[variable])
    if "OTEL_REQID_SENTRY" in environ:
        raw = environ["OTEL_REQID_SENTRY"]
        found["sentry"] = _flag("OTEL_REQID_SENTRY", raw, allow_auto=True)
    if EXCLUDED_URLS_ENV in environ:
        patterns = _patterns(environ[EXCLUDED_URLS_ENV], EXCLUDED_URLS_ENV)
        compile_patterns(patterns, EXCLUDED_URLS_ENV)  # a bad pattern names the variable
        found["excluded_urls"] = patterns
    # As opentelemetry.util.http's get_excluded_urls("AIOHTTP_SERVER") reads them: the
    # specific variable whenever it is set (empty too), else the general one.
    variable = _OTEL_EXCLUDED_URLS_ENV
    if variable not in environ:
        variable = _OTEL_GENERAL_EXCLUDED_URLS_ENV
    otel_patterns = otel_excluded_url_patterns(environ.get(variable, ""))
    if otel_patterns:
        otel_exclude_list(otel_patterns, variable)  # a bad pattern names the variable
        found["otel_excluded_urls"] = otel_patterns
    return found


def header_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The request id header ``OTEL_REQID_HEADER`` names (default ``os.environ``).

    The default header when the variable is unset; None when it says none is sent.
    """
    env = os.environ if environ is None else environ
    if "OTEL_REQID_HEADER" not in env:
        return DEFAULT_HEADER_NAME
    header = env["OTEL_REQID_HEADER"].strip()
    if header.lower() in {"", "none"}:
        return None
    if not _HEADER_TOKEN.fullmatch(header):
        raise ValueError(f"OTEL_REQID_HEADER must be an HTTP header name, got {header!r}")
    return header


def resolve_options(
    given: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    middleware_only: bool = False,
) -> Options:
    """Merge keyword options over the environment (default ``os.environ``).

    Unknown names are a TypeError; with ``middleware_only``, so are the instrumentor's
    own (``record_factory``, ``access_log``). OpenTelemetry's excluded-URL variables
    always apply: they are no keyword option.
    """
    known = _MIDDLEWARE_FIELDS if middleware_only else _FIELDS
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    settings = _from_environment(os.environ if environ is None else environ)
    settings.update(given)
    return Options(**settings)


def spans_file(environ: Mapping[str, str] | None = None) -> str:
    """Return the span file path the environment selects, so writer and reader agree."""
    env = os.environ if environ is None else environ
    return env.get(SPANS_FILE_ENV) or DEFAULT_SPANS_FILE
