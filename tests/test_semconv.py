"""The semantic-convention mode is chosen as OpenTelemetry chooses it; http.url's fast path is
yarl's URL; captured headers follow OpenTelemetry's rules."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict
from opentelemetry.instrumentation._semconv import (
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
)
from opentelemetry.util.http import (
    SanitizeValue,
    get_custom_headers,
    normalise_request_header_name,
    redact_url,
)

from otel_reqid_logging._captured_headers import (
    REQUEST_ENV,
    RESPONSE_ENV,
    SANITIZE_ENV,
    header_capture,
)
from otel_reqid_logging._semconv import (
    OPT_IN_ENV,
    Mode,
    _mode_of,
    conventions_for,
    opt_in_mode,
)

OPT_IN_VALUES = [
    None,
    "",
    "http",
    "http/dup",
    "http,http/dup",
    " http/dup , database",
    "database,http",
    "HTTP",
    "gen_ai_latest_experimental",
    "http/dupe",
    ",",
]


@pytest.fixture
def fresh_stability(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make OpenTelemetry read the opt-in variable again (monkeypatch restores its record)."""
    stability = _OpenTelemetrySemanticConventionStability
    monkeypatch.setattr(stability, "_initialized", False)
    monkeypatch.setattr(stability, "_OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING", {})


def theirs(monkeypatch: pytest.MonkeyPatch, value: str | None) -> str:
    stability: Any = _OpenTelemetrySemanticConventionStability
    monkeypatch.setattr(stability, "_initialized", False)
    monkeypatch.setattr(stability, "_OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING", {})
    if value is None:
        monkeypatch.delenv(OPT_IN_ENV, raising=False)
    else:
        monkeypatch.setenv(OPT_IN_ENV, value)
    stability._initialize()
    mode = stability._get_opentelemetry_stability_opt_in_mode(
        _OpenTelemetryStabilitySignalType.HTTP
    )
    return str(mode.value)


@pytest.mark.parametrize("value", OPT_IN_VALUES)
def test_mode_read_as_opentelemetry_reads_it(
    monkeypatch: pytest.MonkeyPatch, fresh_stability: None, value: str | None
) -> None:
    """Our own reading of the variable (used without OpenTelemetry's record) agrees with theirs."""
    expected = theirs(monkeypatch, value)
    assert _mode_of(value).value == expected
    assert opt_in_mode({} if value is None else {OPT_IN_ENV: value}).value == expected
    # And the mode in force is OpenTelemetry's own record.
    assert opt_in_mode().value == expected


def test_mode_is_the_one_opentelemetry_keeps(
    monkeypatch: pytest.MonkeyPatch, fresh_stability: None
) -> None:
    """OpenTelemetry reads the variable once per process: ours follows its answer."""
    monkeypatch.setenv(OPT_IN_ENV, "http")
    assert opt_in_mode() is Mode.STABLE
    monkeypatch.setenv(OPT_IN_ENV, "http/dup")
    assert opt_in_mode() is Mode.STABLE  # as OpenTelemetry's instrumentations see it


@pytest.mark.parametrize("value", ["http", "http/dup", "database,http", None])
def test_without_opentelemetrys_semconv_module_the_variable_is_read_by_its_rules(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    """Without ``opentelemetry.instrumentation._semconv`` (a release that renamed it: here
    the import fails), the mode is read from the variable by OpenTelemetry's rules."""
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation._semconv", None)
    if value is None:
        monkeypatch.delenv(OPT_IN_ENV, raising=False)
    else:
        monkeypatch.setenv(OPT_IN_ENV, value)
    expected = {None: Mode.OLD, "http": Mode.STABLE, "http/dup": Mode.DUP}
    assert opt_in_mode() is expected.get(value, Mode.STABLE)  # "database,http": http


def test_without_opentelemetrys_stability_record_the_variable_is_read_by_its_rules(
    monkeypatch: pytest.MonkeyPatch, fresh_stability: None
) -> None:
    """Without the private method that answers the mode in force (the module is there, the
    name is not), the mode is read from the variable by OpenTelemetry's rules."""
    stability = _OpenTelemetrySemanticConventionStability
    monkeypatch.delattr(stability, "_get_opentelemetry_stability_opt_in_mode")
    monkeypatch.setenv(OPT_IN_ENV, "http/dup")
    assert opt_in_mode() is Mode.DUP
    monkeypatch.setenv(OPT_IN_ENV, "http")
    assert opt_in_mode() is Mode.STABLE


def test_schema_urls() -> None:
    """The schema URLs OpenTelemetry's instrumentations announce, per mode."""
    assert conventions_for(Mode.OLD).schema_url == "https://opentelemetry.io/schemas/1.11.0"
    assert conventions_for(Mode.STABLE).schema_url == "https://opentelemetry.io/schemas/1.21.0"
    assert conventions_for(Mode.DUP).schema_url == "https://opentelemetry.io/schemas/1.21.0"


async def _ok(request: web.Request) -> web.Response:
    return web.Response()


def _request(target: str, host: str, *, secure: bool = False) -> web.Request:
    app = web.Application()
    app.router.add_get("/{tail:.*}", _ok)
    request = make_mocked_request("GET", target, headers={"Host": host}, app=app)
    if secure:
        request = request.clone(scheme="https")
    return request


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/users/42",
        "/users/42?page=2",
        "/a%20b/c?x=%41&sig=secret",
        "/status/200?Signature=secret&b=1",
        "/a/./b/../c",
        "/a//b",
        "/%7Euser?q=a+b",
        "/trailing/",
        "/?",
    ],
)
@pytest.mark.parametrize(
    "host", ["shop.example:8080", "Shop.Example", "127.0.0.1:80", "[::1]:8080", "h:443"]
)
@pytest.mark.parametrize("secure", [False, True])
def test_http_url_is_yarls_url_redacted(target: str, host: str, secure: bool) -> None:
    """The old conventions' http.url, built from the cached origin, is what OpenTelemetry's
    ``redact_url(str(request.url))`` gives (query values of signatures redacted as ours)."""
    request = _request(target, host, secure=secure)
    found = conventions_for(Mode.OLD).request_attributes(request, "GET", "")
    expected = redact_url(str(request.url))
    if "sig=" in target or "Signature=" in target:
        # Ours redacts in the client's text; theirs re-encodes the query (docs say so).
        base, _, query = str(request.url).partition("?")
        parts = [
            p.split("=")[0] + "=REDACTED" if p.split("=")[0] in {"sig", "Signature"} else p
            for p in query.split("&")
        ]
        expected = f"{base}?{'&'.join(parts)}"
    assert found["http.url"] == expected
    assert found["http.server_name"] == host


def test_captured_headers_as_opentelemetry_captures_them() -> None:
    """Names matched whole and in any case, values sanitized by search, the last one kept."""
    environ = {
        REQUEST_ENV: "X-Custom-.*, accept ,Missing",
        RESPONSE_ENV: "Set-Cookie",
        SANITIZE_ENV: "cookie,.*secret.*",
    }
    capture = header_capture(environ)
    assert capture.request is not None
    assert capture.response is not None
    headers = CIMultiDict(
        [
            ("X-Custom-A", "1"),
            ("x-custom-my-secret", "2"),
            ("Accept", "text/html"),
            ("X-Customer", "3"),
            ("X-Custom-A", "4"),
        ]
    )
    ours = capture.request.attributes(headers.items())
    sanitize = SanitizeValue(["cookie", ".*secret.*"])
    expected = sanitize.sanitize_header_values(
        headers, ["X-Custom-.*", "accept", "Missing"], normalise_request_header_name
    )
    assert ours == expected
    assert ours["http.request.header.x_custom_my_secret"] == ["[REDACTED]"]
    response = capture.response.attributes([("Set-Cookie", "a=b")])
    assert response == {"http.response.header.set_cookie": ["[REDACTED]"]}
    assert get_custom_headers(REQUEST_ENV) == []  # the test touched no real variable


def test_no_capture_without_the_variables() -> None:
    """Without the variables nothing is captured, and no regex is compiled."""
    capture = header_capture({SANITIZE_ENV: ".*"})
    assert capture.request is None
    assert capture.response is None
