"""A Server-Sent Events client for tests and scripts: the poke stream as a queue of frames."""

from __future__ import annotations

import asyncio

from tornado.httpclient import AsyncHTTPClient


class Listener:
    """A Server-Sent Events client: each frame's data ("hello", "poke", "beat") is queued."""

    def __init__(self, url: str, space: str) -> None:
        self.frames: asyncio.Queue[str] = asyncio.Queue()
        self._buffer = b""
        self._http = AsyncHTTPClient(force_instance=True)
        self.done = self._http.fetch(
            f"{url}/api/replicache/poke?spaceID={space}",
            streaming_callback=self._on_chunk,
            request_timeout=3600,
            raise_error=False,
        )

    def _on_chunk(self, chunk: bytes) -> None:
        self._buffer += chunk
        while b"\n\n" in self._buffer:
            frame, self._buffer = self._buffer.split(b"\n\n", 1)
            for line in frame.split(b"\n"):
                if line.startswith(b"data: "):
                    self.frames.put_nowait(line[6:].decode())

    async def next(self, timeout: float) -> str:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def poke(self, timeout: float) -> None:
        """Wait for the next poke, skipping heartbeats."""
        async with asyncio.timeout(timeout):
            while await self.frames.get() != "poke":
                pass

    def close(self) -> None:
        self.done.add_done_callback(lambda f: f.exception())  # closing ends the fetch with 599
        self._http.close()


async def listen(url: str, space: str) -> Listener:
    """A listener that the server has registered (it sent hello)."""
    listener = Listener(url, space)
    first = await listener.next(10)
    if first != "hello":
        raise RuntimeError(f"expected hello, got {first!r}")
    return listener
