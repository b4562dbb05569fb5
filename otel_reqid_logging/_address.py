"""The server address a request was sent to, from its Host header, cached per authority."""

from __future__ import annotations

import re

from aiohttp import web

__all__ = ["server_address"]

# A plain ``host[:port]`` authority: what nearly every request's Host header holds.
_PLAIN_AUTHORITY = re.compile(r"([A-Za-z0-9._-]+)(?::([0-9]{0,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}

# (Host header, scheme) -> host, port and origin. Nearly every request of a server names
# the same few; bounded, since the Host header is the client's choice.
_addresses: dict[tuple[str, str], tuple[str, int, str]] = {}
_MAX_ADDRESSES = 64


def server_address(
    request: web.BaseRequest, scheme: str
) -> tuple[str | None, int | None, str | None]:
    """Return the host and port the request was addressed to, as ``request.url`` has them.

    The third item is the origin (``http://host:port``, the default port left out) as
    ``str(request.url)`` starts, for a plain authority; None for anything else (IPv6,
    IDNA, userinfo, odd ports), which goes through ``request.url``, whose yarl URL costs
    several µs per request.
    """
    authority = request.host
    found = _addresses.get((authority, scheme))
    if found is not None:
        return found
    match = _PLAIN_AUTHORITY.fullmatch(authority)
    if match is not None and scheme in _DEFAULT_PORTS:
        host, port = match.groups()
        if "xn--" not in host.lower() and (not port or int(port) <= 65535):
            host = host.lower()
            number = int(port) if port else _DEFAULT_PORTS[scheme]
            origin = f"{scheme}://{host}"
            if number != _DEFAULT_PORTS[scheme]:
                origin = f"{origin}:{number}"
            if len(_addresses) >= _MAX_ADDRESSES:
                _addresses.clear()
            _addresses[authority, scheme] = found = host, number, origin
            return found
    try:
        url = request.url
    except ValueError:
        # A Host header yarl refuses (a port past 65535, a non-numeric one): the request
        # is still served, its span just has no server address.
        return None, None, None
    return url.host, url.port, None
