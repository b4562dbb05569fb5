"""RequestIdInstrumentor: turn the library on for the whole process, or for one app.

Process-wide, it hooks ``Application.pre_freeze`` on aiohttp's own class, so every
application gets the middleware when it starts, however it was imported or subclassed,
and the middleware lands right after OpenTelemetry's aiohttp-server middleware when that
one is present, so that one SERVER span serves both.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Collection
from typing import Any, cast, overload

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_app import Application as AiohttpApplication
from aiohttp.web_log import AccessLogger
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from ._context import REQUEST_IDS_KEY
from ._error_line import remove_error_line_filters
from ._excluded import is_excluded
from ._options import Options, resolve_options
from ._otel_server import is_otel_server_middleware
from ._patching import Patch
from .access_log import _log_with_ids, _remove_filters
from .middleware import RequestIdMiddleware
from .records import _record_factory_installed, install_record_factory, uninstall_record_factory

__all__ = ["RequestIdInstrumentor"]

_logger = logging.getLogger(__name__)

_INSTRUMENTS = ("aiohttp >= 3.14.2",)
_MIDDLEWARE_KEY = web.AppKey("otel_reqid_logging.middleware", RequestIdMiddleware)


def _outermost_only(
    otel_middleware: Any, excludes: Callable[[web.BaseRequest], bool] | None = None
) -> Any:
    """Wrap OpenTelemetry's middleware so it does nothing for a request already traced.

    It sits on every application OpenTelemetry instruments, sub-applications included,
    and would start a second SERVER span for a request routed into a sub-application.
    Our middleware in the outer application has marked the request by then. A request
    our ``excluded_urls`` leaves alone gets no span from it either: ``excludes`` tests
    that where ours has not run yet (the outermost application), the mark does elsewhere.
    """

    @functools.wraps(otel_middleware)
    async def outermost_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            REQUEST_IDS_KEY in request
            or is_excluded(request)
            or (excludes is not None and excludes(request))
        ):
            return await handler(request)
        return cast(web.StreamResponse, await otel_middleware(request, handler))

    return outermost_only


# aiohttp's private attribute holding the middleware chain an application prepares
# when it is pre-frozen (aiohttp 3.14). Named once, so that a test can take it away.
_PREPARED_MIDDLEWARES = "_middlewares_handlers"


def _subapplications(app: web.Application) -> list[web.Application]:
    """Return the applications added to ``app`` (``add_subapp``, ``add_domain``).

    Read from the public route table: a sub-application's resource names it in its
    ``get_info()``.
    """
    found: list[web.Application] = []
    # A router of the app's own (an ``AbstractRouter``) need not list its resources: such
    # an app has no sub-applications this library can know of.
    resources = getattr(app.router, "resources", None)
    if not callable(resources):
        return found
    for resource in resources():
        try:
            subapp = resource.get_info().get("app")
        except Exception:  # noqa: S112  (a resource of the app's own making; not ours to judge)
            continue
        if isinstance(subapp, web.Application):
            found.append(subapp)
    return found


def _wrap_otel_middlewares(app: web.Application) -> None:
    """Make OpenTelemetry's middleware on ``app`` and its sub-applications skip our requests.

    aiohttp pre-freezes a sub-application as soon as it is added, so on one added before
    this runs only the prepared middleware chain is left to change, and that is aiohttp's
    private attribute. Without it (another aiohttp) such a sub-application keeps
    OpenTelemetry's middleware as it is: a request routed there gets a second SERVER span
    inside ours, and the ids stay those of ours, set before it runs.
    """
    if not app.pre_frozen:
        middlewares = app.middlewares
        for index, other in enumerate(middlewares):
            if is_otel_server_middleware(other) and not hasattr(other, "__wrapped__"):
                middlewares[index] = _outermost_only(other)
    else:
        prepared = getattr(app, _PREPARED_MIDDLEWARES, None)
        if isinstance(prepared, tuple) and prepared:
            setattr(
                app,
                _PREPARED_MIDDLEWARES,
                tuple(
                    (
                        _outermost_only(other)
                        if is_otel_server_middleware(other) and not hasattr(other, "__wrapped__")
                        else other,
                        new_style,
                    )
                    for other, new_style in prepared
                ),
            )
    for subapp in _subapplications(app):
        _wrap_otel_middlewares(subapp)


async def _wrap_otel_middlewares_on_startup(app: web.Application) -> None:
    """Cover sub-applications added after ``instrument_app``, before the app serves."""
    _wrap_otel_middlewares(app)


def _wire(
    app: web.Application, options: Options, *, reconfigure: bool = False
) -> RequestIdMiddleware:
    """Put the middleware on a not yet frozen app once, in the right place.

    A middleware the app already has is kept (moved into place); with ``reconfigure``
    (options given for this app by name) it takes ``options`` instead of its own.
    """
    middlewares = app.middlewares
    existing = [m for m in middlewares if isinstance(m, RequestIdMiddleware)]
    if existing:
        ours = existing[0]
        if reconfigure:
            ours._configure(options)
    else:
        ours = RequestIdMiddleware._from_options(options)
    for duplicate in existing:
        middlewares.remove(duplicate)
    # Inside OpenTelemetry's middleware ours finds its span and reuses it; outside, a
    # second SERVER span would be started.
    position = 0
    for index, other in enumerate(middlewares):
        if is_otel_server_middleware(other):
            position = index + 1
            if not hasattr(other, "__wrapped__"):
                middlewares[index] = _outermost_only(other, ours._excludes)
    middlewares.insert(position, ours)
    _wrap_otel_middlewares(app)
    if _MIDDLEWARE_KEY not in app:
        app.on_response_prepare.append(ours.on_response_prepare)
    app[_MIDDLEWARE_KEY] = ours
    return ours


def _access_log_with_ids(
    original: Callable[..., None], on: Callable[[], bool]
) -> Callable[..., None]:
    """Make aiohttp's ``AccessLogger.log`` write its line as ``RequestIdAccessLogger`` does."""

    def log(
        self: AccessLogger, request: web.BaseRequest, response: web.StreamResponse, time: float
    ) -> None:
        if on():
            _log_with_ids(original, self, request, response, time)
        else:
            original(self, request, response, time)

    return log


class RequestIdInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Request ids for every aiohttp application, or for chosen ones.

    ``instrument(app, **options)`` (or ``instrument_app(app, **options)``) gives one
    application the middleware and the process the record factory and access-log ids;
    ``uninstrument(app)`` (or ``uninstrument_app(app)``) takes them off. Without an app,
    ``instrument(**options)`` acts on every application that starts afterwards and
    ``uninstrument()`` undoes it. The options are those of ``Options``; environment
    variables (``OTEL_REQID_*``) give defaults that explicit options override.
    """

    def __init__(self) -> None:
        # BaseInstrumentor is a singleton: __init__ runs on every construction.
        if not hasattr(self, "_pre_freeze"):
            self._options = Options()
            # aiohttp's own class, not `web.Application`, which OpenTelemetry's aiohttp-server
            # instrumentation may have replaced by a subclass.
            self._pre_freeze = Patch(AiohttpApplication, "pre_freeze", self._make_pre_freeze)
            self._access_log = Patch(AccessLogger, "log", _access_log_with_ids)
            # Middlewares wired process-wide, and those wired by instrument_app: the
            # log wiring stays while either kind is in use.
            self._wired: weakref.WeakSet[RequestIdMiddleware] = weakref.WeakSet()
            self._wired_apps: weakref.WeakSet[RequestIdMiddleware] = weakref.WeakSet()
            self._owns_record_factory = False

    @overload
    def instrument(self, app: web.Application, /, **options: Any) -> None: ...
    @overload
    def instrument(self, /, **options: Any) -> None: ...

    def instrument(self, app: web.Application | None = None, /, **options: Any) -> None:
        """Turn the library on for one app (``instrument(app)``), or process-wide.

        ``instrument(app, **options)`` and ``instrument(app=app, **options)`` are the
        short form of ``instrument_app(app, **options)``; without an app it acts on every
        application, as ``opentelemetry-instrument`` calls it.
        """
        if app is None:
            app = options.pop("app", None)
        if app is None:
            super().instrument(**options)
            return
        # BaseInstrumentor's own switches mean nothing for one app.
        options.pop("skip_dep_check", None)
        options.pop("raise_exception_on_conflict", None)
        self.instrument_app(app, **options)

    @overload
    def uninstrument(self, app: web.Application, /) -> None: ...
    @overload
    def uninstrument(self, /, **kwargs: Any) -> None: ...

    def uninstrument(self, app: web.Application | None = None, /, **kwargs: Any) -> None:
        """Undo ``instrument(app)`` for that app (``uninstrument(app)``), or ``instrument()``."""
        if app is None:
            app = kwargs.pop("app", None)
        if app is None:
            super().uninstrument(**kwargs)
        else:
            self.uninstrument_app(app)

    def instrumentation_dependencies(self) -> Collection[str]:
        """Name the packages this instrumentation works with (the ``instruments`` extra)."""
        return _INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        try:
            options = resolve_options(kwargs)
        except (TypeError, ValueError) as error:
            # Under opentelemetry-instrument an exception here stops the launcher, and with
            # it every instrumentation after this one. Bad keyword options still raise
            # (resolved without the environment, they fail again); a bad OTEL_* value only
            # costs its own setting.
            options = resolve_options(kwargs, environ={})
            _logger.error("%s; the environment's settings for this library are ignored", error)
        self._options = options
        self._setup_logging(self._options)
        self._pre_freeze.apply()

    def _uninstrument(self, **kwargs: Any) -> None:
        self._pre_freeze.remove()
        for middleware in list(self._wired):
            middleware.enabled = False
        self._wired.clear()
        self._release_logging(process_wide_ending=True)

    def instrument_app(self, app: web.Application, **options: Any) -> None:
        """Give one application the middleware, and the process the log wiring."""
        if app.frozen or app.pre_frozen:
            raise RuntimeError(
                "instrument_app() must be called before the application starts serving"
            )
        resolved = resolve_options(options)
        self._setup_logging(resolved)
        if _MIDDLEWARE_KEY not in app:
            app.on_startup.append(_wrap_otel_middlewares_on_startup)
        middleware = _wire(app, resolved, reconfigure=bool(options))
        middleware.enabled = True
        self._wired_apps.add(middleware)

    def uninstrument_app(self, app: web.Application) -> None:
        """Take the middleware off one application (a running one stops using it)."""
        middleware = app.get(_MIDDLEWARE_KEY)
        if middleware is None:
            return
        middleware.enabled = False
        self._wired_apps.discard(middleware)
        if not app.pre_frozen:
            app.middlewares.remove(middleware)
            app.on_response_prepare.remove(middleware.on_response_prepare)
            if _wrap_otel_middlewares_on_startup in app.on_startup:
                app.on_startup.remove(_wrap_otel_middlewares_on_startup)
            del app[_MIDDLEWARE_KEY]
        self._release_logging(process_wide_ending=False)

    def _release_logging(self, *, process_wide_ending: bool) -> None:
        """Undo the log wiring once neither instrument() nor any instrument_app() needs it."""
        process_wide = self.is_instrumented_by_opentelemetry and not process_wide_ending
        if process_wide or any(m.enabled for m in self._wired_apps):
            return
        self._access_log.remove()
        _remove_filters()
        remove_error_line_filters()
        if self._owns_record_factory:
            uninstall_record_factory()
            self._owns_record_factory = False

    def _setup_logging(self, options: Options) -> None:
        if options.record_factory and not _record_factory_installed():
            install_record_factory()
            self._owns_record_factory = True
        if options.access_log:
            self._access_log.apply()

    def _make_pre_freeze(
        self, original: Callable[[web.Application], None], on: Callable[[], bool]
    ) -> Callable[[web.Application], None]:
        wired = self._wired

        def pre_freeze(app: web.Application) -> None:
            if on() and not app.pre_frozen and _MIDDLEWARE_KEY not in app:
                wired.add(_wire(app, self._options))
            original(app)

        return pre_freeze
