"""The SSE fast path's tricks (server/sse_fastpath.py) against the installed Tornado.

Each trick leans on something Tornado does not promise. Had an upgrade broken one, the
symptom elsewhere would be slow or quiet: a garbled poke stream, memory that grows per
listener, hung-up listeners freed only by the garbage collector. Here each trick's
prerequisites are checked on a real connection, and a failure names the trick.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import tornado
import tornado.httpserver
import tornado.testing
import tornado.web
from tornado import httputil
from tornado.iostream import IOStream, StreamBufferFullError

from server import sse_fastpath
from server.sse_fastpath import Listener, frame

pytestmark = pytest.mark.gen_test(timeout=30)

HELLO = b"data: hello\n\n"
POKE = frame(b"data: poke\n\n")
TRICKS = {
    1: "direct send (IOStream.socket, writing(), write())",
    2: "pre-encoded HTTP/1.1 chunks (HTTP1Connection's chunked framing)",
    3: "slim idle handlers (RequestHandler.ui and ._headers)",
    4: "forget the close error (IOStream.error)",
    5: "bounded buffers (IOStream.max_write_buffer_size on a live stream)",
}


def broken(trick: int, what: str) -> str:
    return (
        f"SSE fast path trick {trick}, {TRICKS[trick]}, does not hold with tornado {tornado.version}:"
        f" {what}. See server/sse_fastpath.py; setup.cfg bounds tornado for this reason."
    )


@dataclass
class Opened:
    """The server side of one stream: its handler, parked until the test lets it finish."""

    handler: tornado.web.RequestHandler
    stream: IOStream
    done: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    finish_error: BaseException | None = None  # what finish() raised, if anything

    async def finish(self) -> BaseException | None:
        """Let the handler finish(); what it raised, if anything."""
        self.done.set()
        async with asyncio.timeout(10):
            await self.finished.wait()
        return self.finish_error


class Probe(tornado.web.RequestHandler):
    """What the poke handler does up to its first wait: headers and a first frame through
    Tornado, then the stream is the test's."""

    def initialize(self, opened: asyncio.Queue[Opened]) -> None:
        self.opened = opened

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("X-Probe", "1")
        self.headers_before_flush = self._headers  # trick 3 replaces this very object
        self.write(HELLO)
        await self.flush()
        self.state = Opened(self, self.request.connection.stream)  # type: ignore[attr-defined]
        await self.opened.put(self.state)
        await self.state.done.wait()
        if not self.state.stream.closed():
            try:
                self.finish()
            except Exception as e:
                self.state.finish_error = e
            self.state.finished.set()

    def on_connection_close(self) -> None:
        self.state.closed.set()
        self.state.done.set()


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    headers: dict[str, str]
    opened: Opened

    async def read(self, n: int) -> bytes:
        async with asyncio.timeout(10):
            return await self.reader.readexactly(n)


class Server:
    """A plain Tornado app on loopback whose one handler hands its open stream to the test."""

    def __init__(self) -> None:
        self.opened: asyncio.Queue[Opened] = asyncio.Queue()
        app = tornado.web.Application([("/probe", Probe, {"opened": self.opened})])
        self.http = tornado.httpserver.HTTPServer(app)
        sock, self.port = tornado.testing.bind_unused_port()
        self.http.add_sockets([sock])
        self.clients: list[Client] = []

    async def open(self, version: str = "HTTP/1.1", recv_buffer: int | None = None) -> Client:
        """A stream whose headers came; its first frame (HELLO) is still to be read."""
        sock = socket.socket()
        if recv_buffer is not None:  # before connect(), so the window starts small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"GET /probe {version}\r\nHost: 127.0.0.1\r\n\r\n".encode())
        async with asyncio.timeout(10):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin1").split("\r\n")
            opened = await self.opened.get()
        headers = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        client = Client(reader, writer, headers, opened)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            client.writer.close()
        self.http.stop()
        await self.http.close_all_connections()


@pytest.fixture
def server(io_loop) -> Iterator[Server]:
    server = Server()
    yield server
    io_loop.run_sync(server.close)


async def test_chunked_framing_matches_the_pre_encoded_chunks(server):
    client = await server.open()
    assert client.headers.get("transfer-encoding") == "chunked", broken(
        2, f"an HTTP/1.1 stream without Content-Length is not chunked (headers {client.headers})"
    )
    assert sse_fastpath.is_chunked(client.opened.handler), broken(2, "is_chunked() is false for HTTP/1.1")
    tornados = await client.read(len(frame(HELLO).chunk))
    assert tornados == frame(HELLO).chunk, broken(2, f"Tornado framed {HELLO!r} as {tornados!r}")
    Listener(client.opened.stream, chunked=True).send(POKE)
    assert await client.read(len(POKE.chunk)) == POKE.chunk
    assert await client.opened.finish() is None
    end = await client.read(5)
    assert end == b"0\r\n\r\n", broken(2, f"the stream ended with {end!r}, not Tornado's last chunk")


async def test_an_http_1_0_stream_takes_frames_as_they_are(server):
    client = await server.open(version="HTTP/1.0")
    assert "transfer-encoding" not in client.headers, broken(2, "an HTTP/1.0 stream is chunked")
    assert not sse_fastpath.is_chunked(client.opened.handler), broken(2, "is_chunked() is true for HTTP/1.0")
    assert await client.read(len(HELLO)) == HELLO, broken(2, "Tornado framed an HTTP/1.0 body")
    Listener(client.opened.stream, chunked=False).send(POKE)
    assert await client.read(len(POKE.raw)) == POKE.raw


async def test_direct_send_reaches_the_socket_and_queues_behind_pending_writes(server):
    client = await server.open(recv_buffer=4096)
    stream = client.opened.stream
    await client.read(len(frame(HELLO).chunk))
    assert type(stream) is IOStream, broken(1, f"a plain connection's stream is a {type(stream)}")
    assert isinstance(getattr(stream, "socket", None), socket.socket), broken(
        1, "IOStream.socket is not the connection's socket"
    )
    assert not stream.writing(), broken(1, "IOStream.writing() is true with nothing queued")
    # Nothing queued: the frame goes out in one socket.send, nothing is queued after it.
    Listener(stream, chunked=True).send(POKE)
    assert not stream.writing(), broken(1, "a frame sent while nothing was queued got queued")
    assert await client.read(len(POKE.chunk)) == POKE.chunk
    # The client reads nothing: a big write stays queued, and writing() must say so, or a
    # direct send would overtake it and garble the stream.
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = b"x" * (4 << 20)
    stream.write(big)
    assert stream.writing(), broken(1, "IOStream.writing() is false while a write is queued")
    Listener(stream, chunked=True).send(POKE)
    assert await client.read(len(big) + len(POKE.chunk)) == big + POKE.chunk, broken(
        1, "a frame sent while a write was queued did not arrive after it"
    )


async def test_slimming_an_idle_handler_leaves_finish_working(server):
    client = await server.open()
    handler = client.opened.handler
    await client.read(len(frame(HELLO).chunk))
    assert isinstance(getattr(handler, "_headers", None), httputil.HTTPHeaders), broken(
        3, "RequestHandler._headers is not an HTTPHeaders"
    )
    assert handler._headers is handler.headers_before_flush and "X-Probe" in handler._headers, broken(
        3, "set_header() does not keep the response headers in RequestHandler._headers"
    )
    assert getattr(handler, "ui", None) is not None, broken(3, "RequestHandler.ui is gone")
    assert client.headers.get("x-probe") == "1"
    sse_fastpath.slim_idle_handler(handler)
    Listener(client.opened.stream, chunked=True).send(POKE)
    assert await client.read(len(POKE.chunk)) == POKE.chunk
    error = await client.opened.finish()
    assert error is None, broken(3, f"finish() on a slimmed handler raised {error!r}")
    assert await client.read(5) == b"0\r\n\r\n", broken(3, "finish() on a slimmed handler ended no stream")


async def test_a_reset_leaves_its_error_on_the_stream(server):
    client = await server.open()
    await client.read(len(frame(HELLO).chunk))
    sock = client.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.writer.close()  # a reset, not a clean close
    async with asyncio.timeout(10):
        await client.opened.closed.wait()
    error: Any = getattr(client.opened.stream, "error", "missing")
    assert isinstance(error, OSError) and error.__traceback__ is not None, broken(
        4, f"IOStream.error after a reset is {error!r}, not the error with its traceback"
    )
    sse_fastpath.forget_close_error(client.opened.stream)
    assert client.opened.stream.error is None


async def test_a_buffer_bound_set_on_a_live_stream_holds(server):
    client = await server.open()
    stream = client.opened.stream
    await client.read(len(frame(HELLO).chunk))
    sse_fastpath.bound_buffers(stream, 8192)
    with pytest.raises(StreamBufferFullError):
        stream.write(b"x" * 8193)
        pytest.fail(broken(5, "a write past max_write_buffer_size set on a live stream was taken"))
    sse_fastpath.unbound_buffers(stream)
    stream.write(b"x" * 8193)  # unbounded again: the last chunk always fits
