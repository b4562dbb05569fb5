"""Sentry events of a request carry its ids, as tags on a scope of that request alone.

sentry_sdk is optional and never imported here: it is looked up in ``sys.modules`` when a
request starts, so the package costs nothing and imports nothing for users without it.
sentry-sdk 2.x is tagged through its scopes API; the 1.x releases, which have no
``get_client``, through a Hub of the request's own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from importlib.util import find_spec
from types import ModuleType
from typing import Any

from ._context import RequestIds

__all__ = ["TAG_REQUEST_ID", "TAG_TRACE_ID"]

TAG_REQUEST_ID = "request_id"
TAG_TRACE_ID = "trace_id"

_ScopeFactory = Callable[[RequestIds], "AbstractContextManager[Any] | None"]


def _tag(scope: Any, ids: RequestIds) -> None:
    scope.set_tag(TAG_REQUEST_ID, ids.request_id)
    scope.set_tag(TAG_TRACE_ID, ids.trace_id)


@contextmanager
def _tagged_isolation_scope(sdk: ModuleType, ids: RequestIds) -> Iterator[None]:
    # Without Sentry's aiohttp integration every request task shares the process's
    # isolation scope. A fork of it lives exactly as long as this request, so neither
    # our tags nor what the handler sets with ``sentry_sdk.set_tag`` reach other requests.
    with sdk.isolation_scope() as scope:
        _tag(scope, ids)
        yield


@contextmanager
def _tagged_hub(sdk: ModuleType, hub: Any, ids: RequestIds) -> Iterator[None]:
    # sentry-sdk 1.x: a Hub cloned from the current one is current while this request
    # runs (a ContextVar), and its scope is a copy, as 1.x's own aiohttp integration does.
    with sdk.Hub(hub) as request_hub:
        _tag(request_hub.scope, ids)
        yield


def _request_scope_1x(sdk: ModuleType, ids: RequestIds) -> AbstractContextManager[None] | None:
    hub = sdk.Hub.current
    if hub.client is None:
        return None
    if hub.get_integration("aiohttp") is not None:
        # 1.x's AioHttpIntegration already runs each request in a Hub of its own.
        _tag(hub.scope, ids)
        return None
    return _tagged_hub(sdk, hub, ids)


def _request_scope(ids: RequestIds) -> AbstractContextManager[None] | None:
    """Tag the Sentry events of the running request with its ids.

    Returns a context manager to run the rest of the request in, or None when there is
    nothing to enter: Sentry is not initialized, or its scope is already the request's.
    """
    sdk = sys.modules.get("sentry_sdk")
    if sdk is None:
        return None
    if not hasattr(sdk, "get_client"):
        return _request_scope_1x(sdk, ids)
    client = sdk.get_client()
    if not client.is_active():
        return None
    if client.get_integration("aiohttp") is not None:
        # Sentry's AioHttpIntegration wraps Application._handle, outside every
        # middleware, in an isolation scope of this request alone. Tagging that scope
        # also tags what the integration captures after the middlewares have returned
        # (a 5xx HTTPException, the transaction).
        _tag(sdk.get_isolation_scope(), ids)
        return None
    return _tagged_isolation_scope(sdk, ids)


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
