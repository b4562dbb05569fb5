"""Sentry events of a request carry its ids, as tags on a scope of that request alone.

sentry_sdk is optional and never imported here: it is looked up in ``sys.modules`` when a
request starts, so the package costs nothing and imports nothing for users without it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from importlib.util import find_spec
from types import ModuleType
from typing import Any

from ._context import RequestIds

__all__ = ["TAG_REQUEST_ID", "TAG_TRACE_ID", "ScopeFactory", "request_scope", "scope_factory"]

TAG_REQUEST_ID = "request_id"
TAG_TRACE_ID = "trace_id"

ScopeFactory = Callable[[RequestIds], "AbstractContextManager[Any] | None"]


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


def request_scope(ids: RequestIds) -> AbstractContextManager[None] | None:
    """Tag the Sentry events of the running request with its ids.

    Returns a context manager to run the rest of the request in, or None when there is
    nothing to enter: Sentry is not initialized, or its scope is already the request's.
    """
    sdk = sys.modules.get("sentry_sdk")
    if sdk is None:
        return None
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


def scope_factory(enabled: bool | None) -> ScopeFactory | None:
    """Pick the per-request Sentry hook for the middleware's ``sentry`` option.

    None follows whether sentry_sdk is initialized when each request starts; True
    insists that sentry_sdk is installed; False turns the tags off.
    """
    if enabled is False:
        return None
    if enabled and find_spec("sentry_sdk") is None:
        raise RuntimeError("sentry=True needs sentry_sdk: pip install 'otel-reqid-logging[sentry]'")
    return request_scope
