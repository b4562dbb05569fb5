"""Sentry events of a request carry its ids, as tags on a scope of that request alone.

sentry_sdk is optional and never imported here: it is looked up in ``sys.modules`` when a
request starts, so the package costs nothing and imports nothing for users without it.
sentry-sdk 2.x is tagged through its scopes API; the 1.x releases, which have no
``get_client``, through a Hub of the request's own.

The hook is optional, so it never costs a request anything: a fault inside it (a Sentry
release that changed, a scope that refuses a tag) leaves the request untagged, and the
exception the handler raises passes through the scope unchanged, on to Sentry's own
aiohttp integration and to aiohttp.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from importlib import import_module
from importlib.util import find_spec
from types import ModuleType, TracebackType
from typing import Any, cast

from ._context import RequestIds

__all__ = ["TAG_REQUEST_ID", "TAG_TRACE_ID"]

TAG_REQUEST_ID = "request_id"
TAG_TRACE_ID = "trace_id"

_logger = logging.getLogger(__name__)

_ScopeFactory = Callable[[RequestIds], "AbstractContextManager[Any] | None"]


def _tag(scope: Any, ids: RequestIds) -> None:
    scope.set_tag(TAG_REQUEST_ID, ids.request_id)
    scope.set_tag(TAG_TRACE_ID, ids.trace_id)


class _ForkedIsolationScope:
    """sentry-sdk 2.x: a fork of the isolation scope for one request, tagged with its ids.

    Without Sentry's aiohttp integration every request task shares the process's
    isolation scope. A fork of it lives exactly as long as this request, so neither our
    tags nor what the handler sets with ``sentry_sdk.set_tag`` reach other requests.
    """

    __slots__ = ("_ids", "_manager", "_sdk", "scope")

    def __init__(self, sdk: ModuleType, ids: RequestIds) -> None:
        self._sdk = sdk
        self._ids = ids
        self._manager: AbstractContextManager[Any] | None = None
        self.scope: Any = None

    def __enter__(self) -> None:
        manager = self._sdk.isolation_scope()
        scope = manager.__enter__()
        try:
            _tag(scope, self._ids)
        except BaseException:
            manager.__exit__(None, None, None)
            raise
        self._manager, self.scope = manager, scope

    def __exit__(self, *exc_info: Any) -> None:
        if self._manager is not None:
            self._manager.__exit__(*exc_info)

    def again(self) -> AbstractContextManager[Any] | None:
        """Enter the request's scope again, after the request has left it."""
        if self.scope is None:
            return None
        return cast(
            "AbstractContextManager[Any]",
            import_module("sentry_sdk.scope").use_isolation_scope(self.scope),
        )


class _HubOfRequest:
    """sentry-sdk 1.x: a Hub cloned from the current one, current while the request runs
    (a ContextVar); its scope is a copy, as 1.x's own aiohttp integration does."""

    __slots__ = ("_hub", "_ids", "_sdk")

    def __init__(self, sdk: ModuleType, hub: Any, ids: RequestIds) -> None:
        self._sdk = sdk
        self._hub = hub
        self._ids = ids

    def __enter__(self) -> None:
        self._hub = request_hub = self._sdk.Hub(self._hub)
        request_hub.__enter__()
        try:
            _tag(request_hub.scope, self._ids)
        except BaseException:
            request_hub.__exit__(None, None, None)
            raise

    def __exit__(self, *exc_info: Any) -> None:
        self._hub.__exit__(*exc_info)

    def again(self) -> AbstractContextManager[Any] | None:
        """Make the request's Hub current again, after the request has left it."""
        return cast("AbstractContextManager[Any]", self._hub)


def _request_scope_1x(sdk: ModuleType, ids: RequestIds) -> AbstractContextManager[None] | None:
    hub = sdk.Hub.current
    if hub.client is None:
        return None
    if hub.get_integration("aiohttp") is not None:
        # 1.x's AioHttpIntegration already runs each request in a Hub of its own.
        _tag(hub.scope, ids)
        return None
    return _HubOfRequest(sdk, hub, ids)


def _request_scope(ids: RequestIds) -> AbstractContextManager[None] | None:
    """Tag the Sentry events of the running request with its ids.

    Returns a context manager to run the rest of the request in, or None when there is
    nothing to enter: Sentry is not initialized, its scope is already the request's, or
    the hook failed (then the request runs untagged).
    """
    sdk = sys.modules.get("sentry_sdk")
    if sdk is None:
        return None  # the common case without Sentry: no call further
    try:
        scope = _sentry_scope(sdk, ids)
    except Exception:
        _logger.debug("Sentry tags not set for this request", exc_info=True)
        return None
    return None if scope is None else _Guarded(scope)


def _sentry_scope(sdk: ModuleType, ids: RequestIds) -> AbstractContextManager[None] | None:
    if not hasattr(sdk, "get_client"):
        return _request_scope_1x(sdk, ids)
    client = sdk.get_client()
    if not client.is_active():
        return None
    if client.get_integration("aiohttp") is not None:
        # Sentry's AioHttpIntegration wraps Application._handle, outside every
        # middleware, in an isolation scope of this request alone. Tagging that scope
        # also tags what the integration captures after the middlewares have returned:
        # the unhandled exception that goes on through them (its "aiohttp" event), a
        # 5xx HTTPException, the transaction.
        _tag(sdk.get_isolation_scope(), ids)
        return None
    return _ForkedIsolationScope(sdk, ids)


class _Guarded:
    """Runs a Sentry scope around the request so that a fault in it stays in it.

    Entering may fail (the request then runs outside it); leaving never replaces, hides
    or adds to the exception the request ends with.
    """

    __slots__ = ("_entered", "_scope")

    def __init__(self, scope: AbstractContextManager[None]) -> None:
        self._scope = scope
        self._entered = False

    def again(self) -> _Guarded | None:
        """Guard the request's scope entered once more (see ``_scope_again``)."""
        again = getattr(self._scope, "again", None)
        try:
            scope = None if again is None else again()
        except Exception:
            _logger.debug("Sentry scope not entered again", exc_info=True)
            return None
        return None if scope is None else _Guarded(scope)

    def __enter__(self) -> None:
        try:
            self._scope.__enter__()
        except Exception:
            _logger.debug("Sentry tags not set for this request", exc_info=True)
        else:
            self._entered = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._entered:
            self._entered = False
            try:
                self._scope.__exit__(exc_type, exc, traceback)
            except BaseException as error:
                if error is exc:
                    pass  # the request's own exception, handed back: it goes on as it is
                elif isinstance(error, Exception):
                    _logger.debug("Sentry scope failed to close", exc_info=True)
                else:
                    raise
        # Returns None: the request's exception, if any, always goes on.


def _scope_again(scope: object) -> AbstractContextManager[None] | None:
    """Return the request scope ``scope`` (from ``_request_scope``) to enter once more.

    For aiohttp's error line of a failed request, logged after the request has left its
    scope: Sentry's LoggingIntegration then makes its event in the request's own scope,
    with our tags and whatever the handler set there. None when there is none.
    """
    if not isinstance(scope, _Guarded):
        return None
    return scope.again()


def _scope_factory(enabled: bool | None) -> _ScopeFactory | None:
    """Pick the per-request Sentry hook for the middleware's ``sentry`` option.

    None follows whether sentry_sdk is initialized when each request starts; True
    insists that sentry_sdk is installed; False turns the tags off.
    """
    if enabled is False:
        return None
    if enabled and find_spec("sentry_sdk") is None:
        raise RuntimeError("sentry=True needs sentry_sdk: pip install 'otel-reqid-logging[sentry]'")
    return _request_scope
