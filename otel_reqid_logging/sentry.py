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

__all__ = ["ScopeFactory", "request_scope", "scope_factory"]

ScopeFactory = Callable[[RequestIds], "AbstractContextManager[Any] | None"]


def _active_sdk() -> ModuleType | None:
    """Return sentry_sdk when it is imported and initialized with a DSN, else None."""
    sdk = sys.modules.get("sentry_sdk")
    if sdk is None or not sdk.get_client().is_active():
        return None
    return sdk


@contextmanager
def _tagged_isolation_scope(sdk: ModuleType, ids: RequestIds) -> Iterator[Any]:
    # A forked isolation scope lives exactly as long as the request's task does its
    # work, and concurrent requests each get their own: tags never leak between them.
    with sdk.isolation_scope() as scope:
        scope.set_tag("request_id", ids.request_id)
        scope.set_tag("trace_id", ids.trace_id)
        yield scope


def request_scope(ids: RequestIds) -> AbstractContextManager[Any] | None:
    """Return a context manager tagging Sentry events with ``ids``, or None without Sentry."""
    sdk = _active_sdk()
    return None if sdk is None else _tagged_isolation_scope(sdk, ids)


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
