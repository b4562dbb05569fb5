"""Blocking work in threads, still carrying the ids of the request that started it.

The ids of a request live in ContextVars, and so does OpenTelemetry's current span.
``asyncio.create_task`` and ``asyncio.to_thread`` copy the caller's context, so their
log lines and child spans keep the request's ids. ``loop.run_in_executor`` and
``threading.Thread`` do not: their log lines come out with ``[req:-]``. The two helpers
here close that gap for any thread pool or thread::

    rows = await run_in_executor(pool, query_database, sql)
    threading.Thread(target=bind_context(flush_cache)).start()

Contexts cannot cross process boundaries, so neither helper works with a
``ProcessPoolExecutor`` (pickling the context fails).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import ParamSpec, TypeVar

__all__ = ["bind_context", "run_in_executor"]

P = ParamSpec("P")
R = TypeVar("R")


def bind_context(func: Callable[P, R]) -> Callable[P, R]:
    """Return ``func`` bound to the caller's current context, to be called from any thread.

    Each call runs in a fresh copy of the context captured here, so calls from several
    threads at once work, and what ``func`` sets in ContextVars stays inside that call.
    """
    context = contextvars.copy_context()

    @functools.wraps(func)
    def in_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(func, *args, **kwargs)

    return in_context


async def run_in_executor(
    executor: Executor | None, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> R:
    """Run ``func(*args, **kwargs)`` in ``executor`` (None: the loop's default) in this context.

    What ``loop.run_in_executor`` does, except that the log lines and spans of ``func``
    carry the ids of the running request, and keyword arguments are accepted.
    """
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor, call)
