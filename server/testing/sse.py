"""SSE: a raw HTTP/1.1 Server-Sent Events client for the poke stream.

An asyncio.Protocol, not a stream reader with a task per connection: a load worker holds
thousands of these, and a poke reaches each in one data_received call (stamped with the
time it arrived) without waking a task. It decodes the chunked body itself, so a test can
tell a clean end of stream (the last chunk, then EOF) from a reset.

A test reads events in order with `frame()`, `data()` and `wait_for()`; a load generator
subclasses it and overrides `on_event` to keep only what it counts.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import time
from typing import Any, Self
from urllib.parse import quote, urlsplit


def poke_request(space: str, host: str = "127.0.0.1") -> bytes:
    return (
        f"GET /api/replicache/poke?spaceID={quote(space)} HTTP/1.1\r\n"
        f"Host: {host}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()


def address(base_url: str) -> tuple[str, int]:
    """Host and port to connect to. localhost is 127.0.0.1, where test servers listen (it
    may resolve to ::1 first), and where a source address such as 127.0.0.2 can reach."""
    parts = urlsplit(base_url)
    host = parts.hostname or "localhost"
    return "127.0.0.1" if host == "localhost" else host, parts.port or 80


class SSE(asyncio.Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunked = False  # the body is a stream (else: a refusal with a Content-Length)
        self.ended = False  # the terminating chunk arrived
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen, if given up on
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._raw = b""  # received, not yet decoded (the head, chunk framing)
        self._body = b""  # decoded body, not yet split into frames
        self._frames: collections.deque[dict[str, str]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    @classmethod
    async def open(
        cls, base_url: str, space: str, timeout: float = 10.0, source: str | None = None, **fields: Any
    ) -> Self:
        """Connect and read the response head (any status). source: the local address to
        connect from (127.0.0.2 is another client). fields: for a subclass's constructor."""
        host, port = address(base_url)
        local = None if source is None else (source, 0)
        request = poke_request(space, f"{host}:{port}")
        loop = asyncio.get_running_loop()
        transport = None
        try:
            async with asyncio.timeout(timeout):
                transport, sse = await loop.create_connection(
                    lambda: cls(request, **fields), host, port, local_addr=local
                )
                await sse.head
        except BaseException:
            if transport is not None:
                transport.abort()
            raise
        return sse

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        # The hot path of a load worker: a poke is one chunk holding one event, for each of
        # thousands of listeners in turn, and what this costs delays the next listener's
        # timestamp. So a whole chunk of whole events, nothing left over, takes a short cut
        # (measured per poke on a bench listener: ~0.6 us, ~1.1 us without it, ~0.4 us counting
        # b"data: poke" in the raw bytes as the bench's own listener did).
        at = time.monotonic()
        if self.chunked and not self._raw and not self._body and data.endswith(b"\n\n\r\n"):
            line = data.find(b"\r\n")
            if len(data) == line + 4 + int(data[:line], 16):
                for event in data[line + 2 : -4].split(b"\n\n"):
                    self.on_event(event, at)
                return
        self._receive(data, at)

    def _receive(self, data: bytes, at: float) -> None:
        raw = self._raw + data
        if not self.head.done():
            raw = self._read_head(raw)
            if raw is None:
                return
        if not self.chunked:
            self._body += raw  # a refusal: JSON with a Content-Length
            self._raw = b""
            self._wake()
            return
        body = self._body
        while not self.ended and (line := raw.find(b"\r\n")) >= 0:
            size = int(raw[:line], 16)  # Tornado sends no chunk extensions
            end = line + 4 + size
            if len(raw) < end:
                break
            body += raw[line + 2 : end - 2]
            raw = raw[end:]
            if size == 0:
                self.ended = True
                self._wake()
        self._raw = raw
        *events, self._body = body.split(b"\n\n")
        for event in events:
            self.on_event(event, at)

    def eof_received(self) -> None:
        return None  # close: connection_lost(None) tells a clean end from a reset

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(exc or ConnectionResetError("closed before the response head"))
        if not self.lost.done():
            self.lost.set_result(exc)
        self._wake()

    def _read_head(self, raw: bytes) -> bytes | None:
        """Parse the response head; what follows it, or None while it is incomplete."""
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            self._raw = raw
            return None
        lines = raw[:end].decode("latin1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
        self.chunked = self.headers.get("transfer-encoding") == "chunked"
        self.head.set_result(None)
        return raw[end + 4 :]

    # ---- events

    def on_event(self, event: bytes, at: float) -> None:
        """Each event as it arrives (its lines, e.g. b"data: poke"; at: its time.monotonic()).
        Queued here as {field: value} for frame(); a load generator overrides this to keep
        only what it counts."""
        fields = {}
        for line in event.decode().split("\n"):
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        self._frames.append(fields)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def frame(self, timeout: float = 10.0) -> dict[str, str] | None:
        """The next event as {field: value}; None once the stream ended cleanly."""
        async with asyncio.timeout(timeout):
            while not self._frames:
                if self.ended:
                    return None
                if self.lost.done():
                    raise self.lost.result() or ConnectionResetError("ended without the last chunk")
                await self._wait()
        return self._frames.popleft()

    async def data(self, timeout: float = 10.0) -> str | None:
        frame = await self.frame(timeout)
        return None if frame is None else frame["data"]

    async def wait_for(self, data: str, timeout: float = 10.0) -> None:
        """Read frames until one carries `data` (others, e.g. beats, are skipped)."""
        async with asyncio.timeout(timeout):
            while (got := await self.data(timeout)) != data:
                if got is None:
                    raise EOFError(f"the stream ended before {data!r}")

    def drain(self) -> list[dict[str, str]]:
        """The frames received and not read yet; none are left queued."""
        frames = list(self._frames)
        self._frames.clear()
        return frames

    async def json(self, timeout: float = 10.0) -> Any:
        """The body of a refusal (a JSON error with Content-Length)."""
        length = int(self.headers["content-length"])
        async with asyncio.timeout(timeout):
            while len(self._body) < length:
                if self.lost.done():
                    raise ConnectionResetError("closed before the whole body")
                await self._wait()
        return json.loads(self._body[:length])

    async def closed(self, timeout: float = 10.0) -> BaseException | None:
        """Wait for the connection to end: None for a clean close (EOF, or ours), else the
        error it ended with (a reset)."""
        return await asyncio.wait_for(asyncio.shield(self.lost), timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def listen(base_url: str, space: str, timeout: float = 10.0, source: str | None = None) -> SSE:
    """A poke stream the server has registered: hello is its first frame."""
    sse = await SSE.open(base_url, space, timeout, source)
    if sse.status != 200:
        sse.close()
        raise RuntimeError(f"poke stream refused: {sse.status} {sse.headers}")
    first = await sse.data(timeout)
    if first != "hello":
        sse.close()
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
