"""SSE: a raw HTTP/1.1 Server-Sent Events client on asyncio streams, light enough for
hundreds of connections in one test. It parses the chunked body itself so a test can
tell a clean end of stream (the last chunk) from a reset."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any
from urllib.parse import quote, urlsplit


def poke_request(space: str, host: str = "127.0.0.1") -> bytes:
    return (
        f"GET /api/replicache/poke?spaceID={quote(space)} HTTP/1.1\r\n"
        f"Host: {host}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()


def address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    return "127.0.0.1", parts.port or 80


class SSE:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.ended = False  # the terminating chunk arrived
        self._buffer = b""

    @classmethod
    async def open(cls, base_url: str, space: str, timeout: float = 10.0, source: str | None = None) -> SSE:
        """source: the local address to connect from (127.0.0.2 is another client)."""
        local = None if source is None else (source, 0)
        connecting = asyncio.open_connection(*address(base_url), local_addr=local)
        reader, writer = await asyncio.wait_for(connecting, timeout)
        sse = cls(reader, writer)
        writer.write(poke_request(space))
        await asyncio.wait_for(sse._read_head(), timeout)
        return sse

    async def _read_head(self) -> None:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()

    async def json(self, timeout: float = 10.0) -> Any:
        """The body of a refusal (a JSON error with Content-Length)."""
        length = int(self.headers["content-length"])
        return json.loads(await asyncio.wait_for(self.reader.readexactly(length), timeout))

    async def frame(self, timeout: float = 10.0) -> dict[str, str] | None:
        """The next event as {field: value}; None once the stream ended cleanly."""
        while b"\n\n" not in self._buffer:
            chunk = await asyncio.wait_for(self._chunk(), timeout)
            if chunk is None:
                return None
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n\n", 1)
        fields = {}
        for line in raw.decode().split("\n"):
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        return fields

    async def data(self, timeout: float = 10.0) -> str | None:
        frame = await self.frame(timeout)
        return None if frame is None else frame["data"]

    async def _chunk(self) -> bytes | None:
        if self.ended:
            return None
        size = int(await self.reader.readuntil(b"\r\n"), 16)
        body = await self.reader.readexactly(size + 2)
        if size == 0:
            self.ended = True
            return None
        return body[:-2]

    async def wait_for(self, data: str, timeout: float = 10.0) -> None:
        """Read frames until one carries `data` (others, e.g. beats, are skipped)."""
        async with asyncio.timeout(timeout):
            while (got := await self.data(timeout)) != data:
                if got is None:
                    raise EOFError(f"the stream ended before {data!r}")

    def close(self) -> None:
        self.writer.close()


async def listen(base_url: str, space: str, timeout: float = 10.0, source: str | None = None) -> SSE:
    """A poke stream the server has registered: hello is its first frame."""
    sse = await SSE.open(base_url, space, timeout, source)
    if sse.status != 200:
        raise RuntimeError(f"poke stream refused: {sse.status} {sse.headers}")
    first = await sse.data(timeout)
    if first != "hello":
        raise RuntimeError(f"the stream began with {first!r}, not hello")
    return sse


async def stuck_socket(base_url: str, space: str) -> socket.socket:
    """A poke request on a socket with a tiny receive buffer that is never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, address(base_url))
    await loop.sock_sendall(sock, poke_request(space))
    return sock
