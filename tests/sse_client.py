"""A raw Server-Sent Events reader over a plain socket, for tests that must also
close the stream from the client side (Tornado's HTTP client cannot)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote, urlsplit


class SSEStream:
    def __init__(self, base_url: str, space: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = f"/api/replicache/poke?spaceID={quote(space)}"
        self.buffer = b""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> SSEStream:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        self.writer.write(f"{head}Accept: text/event-stream\r\n\r\n".encode())
        await self.writer.drain()
        return self

    async def wait_for(self, data: str, timeout: float = 10.0) -> None:
        """Read until a frame `data: <data>` arrives (frames before it are dropped)."""
        assert self.reader is not None
        want = f"data: {data}\n\n".encode()
        async with asyncio.timeout(timeout):
            while want not in self.buffer:
                chunk = await self.reader.read(4096)
                if not chunk:
                    raise EOFError(f"stream ended before {data!r}: {self.buffer!r}")
                self.buffer += chunk
        self.buffer = self.buffer.split(want, 1)[1]

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()
