"""Options: one frozen keyword-only object, validated, and the one reader of the environment."""

from __future__ import annotations

import ast
import dataclasses
import re
import typing
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

import otel_reqid_logging
from otel_reqid_logging import RequestIdMiddleware, current_request_id
from otel_reqid_logging._options import (
    ENVIRONMENT_VARIABLES,
    MiddlewareOptions,
    Options,
    resolve_options,
)
from otel_reqid_logging.compat import RequestIdMiddleware as CompatMiddleware

PACKAGE = Path(otel_reqid_logging.__file__).parent
DOCS = Path(__file__).parent.parent / "docs" / "options.md"


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=current_request_id() or "-")


def app_with(middleware: RequestIdMiddleware) -> web.Application:
    app = web.Application(middlewares=[middleware])
    app.router.add_get("/", hello)
    app.router.add_get("/health", hello)
    return app


def test_options_are_frozen_and_keyword_only() -> None:
    """Options cannot be built positionally nor changed after construction."""
    with pytest.raises(TypeError):
        Options(None)  # type: ignore[call-arg]
    options = Options(id_length=6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.id_length = 7  # type: ignore[misc]


def test_middleware_keywords_are_the_options() -> None:
    """The middleware's typed keywords are the Options fields it uses, with the same types."""
    option_types = typing.get_type_hints(Options)
    keyword_types = typing.get_type_hints(MiddlewareOptions)
    instrumentor_only = {"record_factory", "access_log"}
    environment_only = {"otel_excluded_urls"}  # OpenTelemetry's variables, no keyword
    fields = {f.name for f in dataclasses.fields(Options) if f.init}
    assert set(keyword_types) == fields - instrumentor_only - environment_only
    for name, kind in keyword_types.items():
        assert kind == option_types[name], name


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        (
            {"tracer_provider": "jaeger"},
            TypeError,
            "tracer_provider must be an OpenTelemetry TracerProvider or None, got 'jaeger'",
        ),
        ({"id_length": "8"}, TypeError, "id_length must be int, got '8'"),
        ({"id_length": True}, TypeError, "id_length must be int, got True"),
        ({"traceresponse": "false"}, TypeError, "traceresponse must be bool, got 'false'"),
        ({"sentry": "auto"}, TypeError, "sentry must be True, False or None, got 'auto'"),
        ({"header_name": "X Request"}, ValueError, "header_name must be an HTTP header name"),
        ({"incoming_header_name": ""}, ValueError, "incoming_header_name must be an HTTP"),
        ({"excluded_urls": 5}, TypeError, "excluded_urls must be a string or a sequence"),
        ({"excluded_urls": ["/ok", 5]}, TypeError, "excluded_urls must hold strings, got 5"),
        (
            {"excluded_urls": "/ok,/health(z"},
            ValueError,
            "excluded_urls: '/health(z' is not a regular expression (missing ), unterminated",
        ),
    ],
)
def test_bad_options_name_the_option(
    given: dict[str, object], error: type[Exception], message: str
) -> None:
    """A wrong option fails at construction, saying which option and what it got."""
    with pytest.raises(error, match=re.escape(message)):
        resolve_options(given, {})
    with pytest.raises(error, match=re.escape(message)):
        RequestIdMiddleware(**given)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS": "health,[a-"},
            "OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS: '[a-' is not a regular expression",
        ),
        (
            {"OTEL_PYTHON_EXCLUDED_URLS": "*ping"},
            "OTEL_PYTHON_EXCLUDED_URLS: '*ping' is not a regular expression",
        ),
        ({"OTEL_REQID_TRACERESPONSE": "sometimes"}, "OTEL_REQID_TRACERESPONSE must be true or"),
        ({"OTEL_REQID_HEADER": "X:Id"}, "OTEL_REQID_HEADER must be an HTTP header name"),
        ({"OTEL_REQID_ID_LENGTH": "ten"}, "OTEL_REQID_ID_LENGTH must be a number, got 'ten'"),
        (
            {"OTEL_REQID_ID_LENGTH": "20"},
            "OTEL_REQID_ID_LENGTH must be between 4 and 12, got '20'",
        ),
    ],
)
def test_bad_environment_names_the_variable(environ: dict[str, str], message: str) -> None:
    """A wrong environment value fails with the variable's name and the value."""
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_options({}, environ)


def test_excluded_urls_environment_precedence() -> None:
    """OpenTelemetry's variables are read as OpenTelemetry reads them (the aiohttp-server
    one whenever it is set, empty too), into their own list; the library's own variable
    gives ``excluded_urls``, which a keyword overrides."""
    both = {
        "OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS": " /health , /ready ",
        "OTEL_PYTHON_EXCLUDED_URLS": "/other",
    }
    options = resolve_options({}, both)
    assert options.otel_excluded_urls == ("/health", "/ready")
    assert options.excluded_urls == ()
    assert options.url_excluded is None
    set_but_empty = {
        "OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS": "",
        "OTEL_PYTHON_EXCLUDED_URLS": "x",
    }
    assert resolve_options({}, set_but_empty).url_untraced is None
    assert resolve_options({}, {"OTEL_PYTHON_EXCLUDED_URLS": "x"}).otel_excluded_urls == ("x",)
    own = {**both, "OTEL_REQID_EXCLUDED_URLS": " ^/healthz$ ,"}
    assert resolve_options({}, own).excluded_urls == ("^/healthz$",)
    assert resolve_options({"excluded_urls": ["/k"]}, own).excluded_urls == ("/k",)
    assert resolve_options({"excluded_urls": ""}, own).url_excluded is None
    # The keyword leaves OpenTelemetry's list alone.
    assert resolve_options({"excluded_urls": ""}, own).otel_excluded_urls == ("/health", "/ready")
    assert resolve_options({}, {}).url_excluded is None
    assert resolve_options({}, {}).url_untraced is None
    with pytest.raises(TypeError, match="otel_excluded_urls"):
        resolve_options({"otel_excluded_urls": ("x",)}, {})


def test_patterns_that_only_compile_alone_still_work() -> None:
    """Patterns that cannot be joined into one regex (repeated group names) are each tried."""
    options = Options(excluded_urls=["(?P<p>/a)$", "(?P<p>/b)$"])
    assert options.url_excluded is not None
    assert options.url_excluded("http://h/b")
    assert not options.url_excluded("http://h/c")


def test_middleware_refuses_the_instrumentors_own_options() -> None:
    """record_factory and access_log belong to the instrumentor, not to a middleware."""
    with pytest.raises(TypeError, match=re.escape("unknown option(s) record_factory")):
        RequestIdMiddleware(record_factory=False)  # type: ignore[call-arg]
    assert resolve_options({"record_factory": False}, {}).record_factory is False


async def test_environment_applies_to_a_bare_middleware(
    aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RequestIdMiddleware() reads the same variables as the instrumentor does."""
    monkeypatch.setenv("OTEL_REQID_HEADER", "X-Correlation-ID")
    monkeypatch.setenv("OTEL_REQID_ID_LENGTH", "12")
    monkeypatch.setenv("OTEL_REQID_TRACERESPONSE", "true")
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "/health")
    client = await aiohttp_client(app_with(RequestIdMiddleware()))

    response = await client.get("/")
    body = await response.text()
    assert len(body) == 12
    assert response.headers["X-Correlation-ID"] == body
    assert "X-Request-ID" not in response.headers
    assert response.headers["traceresponse"].startswith("00-")

    health = await client.get("/health")
    assert await health.text() == "-"
    assert "X-Correlation-ID" not in health.headers
    assert "traceresponse" not in health.headers


async def test_keywords_override_the_environment(
    aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit keyword beats its variable, even one that turns a feature off."""
    monkeypatch.setenv("OTEL_REQID_HEADER", "X-Correlation-ID")
    monkeypatch.setenv("OTEL_REQID_TRACERESPONSE", "true")
    monkeypatch.setenv("OTEL_REQID_EXCLUDED_URLS", "/health")
    middleware = RequestIdMiddleware(header_name="X-Mine", traceresponse=False, excluded_urls=())
    client = await aiohttp_client(app_with(middleware))

    health = await client.get("/health")
    assert health.headers["X-Mine"] == await health.text() != "-"
    assert "traceresponse" not in health.headers


async def test_compat_middleware_takes_the_new_options(aiohttp_client: AiohttpClient) -> None:
    """The ancestor's middleware accepts every option of ours, the header under its old name."""
    middleware = CompatMiddleware(excluded_urls="^/health$", traceresponse=True, id_length=6)
    client = await aiohttp_client(app_with(middleware))
    response = await client.get("/")
    assert len(response.headers["X-Request-Id"]) == 6
    assert "traceresponse" in response.headers
    health = await client.get("/health")
    assert "X-Request-Id" not in health.headers
    with pytest.raises(TypeError, match="request_id_header_name"):
        CompatMiddleware(header_name="X-Other")


def _environment_readers() -> set[str]:
    """Modules of the package that touch os.environ or os.getenv."""
    readers = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in {"environ", "getenv", "environb"}
            ):
                readers.add(path.relative_to(PACKAGE).as_posix())
    return readers


def test_environment_is_read_in_known_places() -> None:
    """The options' variables are read only by _options; the others have named homes.

    export.py reads the standard OTEL_* exporter settings, the lookup command the defaults
    of its own flags, _semconv.py and _captured_headers.py OpenTelemetry's own HTTP
    variables (the semantic-convention mode, the captured headers), where and as
    OpenTelemetry's instrumentations read them; any new reader must be added here, on
    purpose.
    """
    assert _environment_readers() <= {
        "_options.py",
        "export.py",
        "lookup/_cli.py",
        "_semconv.py",
        "_captured_headers.py",
    }
    sources = {
        path.relative_to(PACKAGE).as_posix(): path.read_text(encoding="utf-8")
        for path in PACKAGE.rglob("*.py")
    }
    for variable in ENVIRONMENT_VARIABLES:
        quoted = f'"{variable}"'
        holders = {name for name, text in sources.items() if quoted in text}
        assert holders == {"_options.py"}, variable


def test_docs_table_lists_every_variable() -> None:
    """docs/options.md's environment table names exactly the variables _options reads."""
    text = DOCS.read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `(OTEL_[A-Z_]+)` \|", text, flags=re.MULTILINE))
    assert table >= set(ENVIRONMENT_VARIABLES)
