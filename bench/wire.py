"""A TCP proxy on loopback that counts the bytes and HTTP requests passing through it."""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["CountingProxy"]


class CountingProxy:
    """A TCP proxy on loopback in front of Jaeger's query port that counts bytes.

    It runs its own event loop in a thread, so the CLI (which runs its own) can be timed
    in the calling thread as a user would run it.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self.bytes = 0
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the counting proxy did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def take(self) -> tuple[int, int]:
        """Bytes and HTTP requests since the last call."""
        counted = (self.bytes, self.requests)
        self.bytes = self.requests = 0
        return counted

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, asking: bool
        ) -> None:
            try:
                while chunk := await source.read(65536):
                    self.bytes += len(chunk)
                    if asking:
                        # One request line per request; a URL cannot hold a raw CRLF.
                        self.requests += chunk.count(b" HTTP/1.1\r\n")
                    sink.write(chunk)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()
                with contextlib.suppress(ConnectionError):
                    await sink.wait_closed()

        await asyncio.gather(
            pipe(reader, up_writer, asking=True), pipe(up_reader, writer, asking=False)
        )
