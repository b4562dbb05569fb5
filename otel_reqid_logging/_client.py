"""Calls out of a request carry its trace, and optionally its request id, to the called service."""

from __future__ import annotations

from collections.abc import Collection
from types import SimpleNamespace

import aiohttp
from multidict import CIMultiDict
from opentelemetry.propagate import inject
from opentelemetry.propagators.textmap import Setter
from yarl import URL

from ._context import current_request_id
from ._options import _HEADER_TOKEN, DEFAULT_HEADER_NAME, header_from_environment

__all__ = ["client_trace_config"]

# Host names (lower case, no trailing dot) with a port, or with None for any port.
_Allowed = frozenset[tuple[str, int | None]]


class _SetIfAbsent(Setter[CIMultiDict[str]]):
    """Write a propagation header only where neither the caller nor another tracer has."""

    def set(self, carrier: CIMultiDict[str], key: str, value: str) -> None:
        if key not in carrier:
            carrier[key] = value


_SET_IF_ABSENT = _SetIfAbsent()


def client_trace_config(
    *,
    propagate_request_id: bool = False,
    hosts: Collection[str] | None = None,
    header_name: str | None = None,
) -> aiohttp.TraceConfig:
    """Return a TraceConfig that carries the running request's trace into outgoing calls.

    For ``aiohttp.ClientSession(trace_configs=[client_trace_config()])``. Each request the
    session starts gets the current OpenTelemetry context, written by the global
    propagator (W3C ``traceparent`` by default), so the called service continues the
    trace. With ``propagate_request_id`` it also gets ``header_name`` with the current
    request id, but only to ``hosts`` (None: every host). ``header_name`` defaults to the
    header the middleware uses, ``OTEL_REQID_HEADER`` or ``X-Request-ID``, so services
    configured by the environment agree. Each entry of ``hosts`` is an
    exact host name or address, matching any port, or ``host:port`` (``[v6addr]:port``),
    matching that port only. A header already on the request, set by the caller or by
    OpenTelemetry's aiohttp-client instrumentation, is never written again.
    """
    if not isinstance(propagate_request_id, bool):
        raise TypeError(f"propagate_request_id must be bool, got {propagate_request_id!r}")
    if header_name is None:
        # OTEL_REQID_HEADER=none sends no response header; calls out still need a name.
        header_name = header_from_environment() or DEFAULT_HEADER_NAME
    if not isinstance(header_name, str) or not _HEADER_TOKEN.fullmatch(header_name):
        raise ValueError(f"header_name must be an HTTP header name, got {header_name!r}")
    allowed = None if hosts is None else _parse_hosts(hosts)
    if allowed is not None and not propagate_request_id:
        raise ValueError("hosts limits where the request id goes: use it with propagate_request_id")
    config = aiohttp.TraceConfig()

    async def on_request_start(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        inject(params.headers, setter=_SET_IF_ABSENT)
        if propagate_request_id:
            _send_request_id(context, params.headers, params.url, allowed, header_name)

    async def on_request_redirect(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestRedirectParams,
    ) -> None:
        # aiohttp sends the same headers on to the redirect's target, which may be a host
        # the request id must not reach.
        location = params.response.headers.get("Location")
        try:
            target = None if location is None else params.url.join(URL(location))
        except ValueError:
            target = None
        _send_request_id(context, params.headers, target, allowed, header_name)

    config.on_request_start.append(on_request_start)
    if allowed is not None:
        config.on_request_redirect.append(on_request_redirect)
    return config


def _send_request_id(
    context: SimpleNamespace,
    headers: CIMultiDict[str],
    url: URL | None,
    allowed: _Allowed | None,
    header_name: str,
) -> None:
    """Put the request id on a request to an allowed host; take ours off any other."""
    # The id is this library's own (derived from the span, or adopted after the
    # allowlist), never a raw client header.
    request_id = current_request_id()
    ours = getattr(context, "otel_reqid_sent", False)
    if url is not None and request_id is not None and _is_allowed(url, allowed):
        if header_name not in headers:
            headers[header_name] = request_id
            context.otel_reqid_sent = True
    elif ours:
        headers.popall(header_name, None)
        context.otel_reqid_sent = False


def _is_allowed(url: URL, allowed: _Allowed | None) -> bool:
    if allowed is None:
        return True
    host = (url.host or "").rstrip(".").lower()
    return (host, None) in allowed or (host, url.port) in allowed


def _parse_hosts(hosts: Collection[str]) -> _Allowed:
    """Turn ``hosts`` entries into (host, port or None) pairs; reject what is not a host."""
    if isinstance(hosts, str):
        raise TypeError(f"hosts must be a collection of host names, not the string {hosts!r}")
    allowed = set()
    for entry in hosts:
        if not isinstance(entry, str):
            raise TypeError(f"hosts must hold host names (strings), got {entry!r}")
        host, port = _split_host_port(entry.strip())
        host = host.rstrip(".").lower()
        if not host or any(c in host for c in "/@ ") or (port is not None and not 0 < port < 65536):
            raise ValueError(f"not a host name or host:port in hosts: {entry!r}")
        allowed.add((host, port))
    return frozenset(allowed)


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6addr] or [v6addr]:port
        address, _, rest = entry[1:].partition("]")
        if not rest:
            return address, None
        if rest.startswith(":") and rest[1:].isdigit():
            return address, int(rest[1:])
        return "", None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return (host, int(port)) if port.isdigit() else ("", None)
    return entry, None  # a name, or a bare IPv6 address (any port)
