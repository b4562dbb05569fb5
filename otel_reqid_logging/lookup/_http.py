"""Bounded GET requests for the HTTP trace stores, with failures turned into BackendError."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from ._errors import BackendError

__all__ = ["MAX_BODY_BYTES", "Response", "get"]

MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Response:
    """Status and body of one answer."""

    status: int
    text: str

    def json(self) -> object:
        """The body parsed as JSON, or None when it is not JSON (an HTML page, plain text)."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None


async def get(
    session: aiohttp.ClientSession,
    url: str,
    *,
    params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    store: str,
) -> Response:
    """GET `url`; a refused connection, a timeout or an oversized body raises BackendError."""
    try:
        async with session.get(url, params=params, allow_redirects=True) as response:
            body = await _read_bounded(response, store=store, url=url)
            status = response.status
            charset = response.charset or "utf-8"
    except asyncio.TimeoutError:
        raise BackendError(f"{store} did not answer in time ({url})") from None
    except aiohttp.ClientConnectorError as error:
        if isinstance(error.os_error, ConnectionRefusedError):
            reason = "connection refused"
        else:
            reason = error.os_error.strerror or type(error.os_error).__name__
        raise BackendError(f"cannot reach {store} at {url}: {reason}") from None
    except aiohttp.ClientError as error:
        raise BackendError(f"{store} request failed ({url}): {type(error).__name__}") from None
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    return Response(status=status, text=text)


async def _read_bounded(response: aiohttp.ClientResponse, *, store: str, url: str) -> bytes:
    """The whole body, chunk by chunk, refusing more than MAX_BODY_BYTES.

    One `content.read(n)` is not enough: it returns what the first chunk holds, so a
    large answer would be cut short and fail to parse.
    """
    too_large = BackendError(f"{store} answer is larger than {MAX_BODY_BYTES} bytes ({url})")
    if (response.content_length or 0) > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
