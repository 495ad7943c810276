"""The SSE fast path: what the poke streams do behind Tornado's back, and why.

Thousands of poke streams sit idle on one process and one commit wakes them all, so the
streams skip parts of Tornado that cost memory per stream or time per poke. Each trick
leans on something Tornado does not promise: tests/test_sse_fastpath.py checks every one
against the installed Tornado and names the trick that broke, and setup.cfg keeps
tornado below 7.

1. Direct send (Listener.send). A poke goes straight to the socket with socket.send
   when the IOStream has nothing queued (IOStream.writing() is false): one syscall, no
   Future and no write callback per listener. Otherwise it queues behind the rest with
   IOStream.write. The hub's loop over the listeners of a space took half the time:
   7.0 ms for 2,000 idle loopback listeners against 14 ms through IOStream.write (5,000:
   18.8 against 35.7 ms; tornado 6.6.1, 2 cores, medians of 100 interleaved wakes). With
   it the hub writes to every listener in one loop turn without waking a coroutine per
   listener (6d48851); docs/performance.md has the fan-out: poke p99 37.8 ms for 1,000
   listeners and 108 ms for 5,000 (targets 50 and 250 ms), measured at ccf08f0.
2. Pre-encoded chunks (Frame, frame). Writing to the socket skips Tornado's
   HTTP1Connection, which frames an HTTP/1.1 body without Content-Length in chunks
   (`<hex length>\\r\\n<data>\\r\\n`). So each frame is encoded once, as is and as such a
   chunk, and every listener sends the same bytes object; an HTTP/1.0 stream (not
   chunked) gets it as is.
3. Slim idle handlers (slim_idle_handler). An idle stream's handler keeps Tornado's
   template helpers (`self.ui`: bound methods per handler) and its response headers
   (`self._headers`), neither of which it uses once the headers are sent; finish() reads
   `_headers` only while they are unsent. Dropping the headers (with a slotted listen()
   context manager) took an idle listener from 16.96 to 15.5 KB (a615e57); the helpers
   went in f3d2f14, not measured alone. docs/performance.md has 14.94 KB per listener
   for 10,000 (target 16 KB).
4. Forget the close error (forget_close_error). A stream closed by a reset keeps the
   error in `IOStream.error`, and its traceback holds the stream's frames: a cycle that
   only the garbage collector breaks, so a thousand hung-up listeners kept their memory
   until its next full pass. Clearing it frees them by reference counting: RSS after
   10,000 closed listeners went from 5.3x to 3.4x the baseline (3c534b9).
5. Bounded buffers (bound_buffers). A fixed kernel send buffer (no autotuning up to
   megabytes) and `IOStream.max_write_buffer_size` set on a live stream, so a client
   that stops reading fills only its own buffers and is dropped (StreamBufferFullError)
   instead of growing the server's memory; the stream's last chunk is written unbounded.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any

from tornado import httputil
from tornado.iostream import IOStream, StreamBufferFullError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """An SSE frame encoded once: as is, and as one HTTP/1.1 chunk (trick 2)."""

    raw: bytes
    chunk: bytes


def frame(text: bytes) -> Frame:
    return Frame(text, b"%x\r\n%s\r\n" % (len(text), text))


def is_chunked(handler: Any) -> bool:
    """Whether Tornado frames this response in chunks: HTTP/1.1, a GET, a 200, and no
    Content-Length (the poke stream sets none)."""
    return bool(handler.request.version == "HTTP/1.1")


@dataclass(eq=False, slots=True)
class Listener:
    """One SSE connection, written to by the hub without waking its handler."""

    stream: IOStream
    chunked: bool  # is_chunked(handler)

    def send(self, frame: Frame) -> None:
        """Trick 1: straight to the socket when nothing is queued, else behind the rest."""
        data = frame.chunk if self.chunked else frame.raw
        stream = self.stream
        if stream.closed():
            return
        try:
            if not stream.writing() and type(stream) is IOStream:  # not TLS: SSLIOStream
                try:
                    sent = stream.socket.send(data)
                except BlockingIOError:
                    sent = 0
                if sent == len(data):
                    return
                data = data[sent:]
            stream.write(data)  # behind what is queued; capped at max_write_buffer_size
        except StreamBufferFullError:
            log.info("dropping a stuck poke listener")
            stream.close()
        except OSError:  # the peer is gone
            stream.close()


def slim_idle_handler(handler: Any) -> None:
    """Trick 3, once the response headers are sent: drop what an idle stream never uses."""
    handler.ui = None
    handler._headers = httputil.HTTPHeaders()


def forget_close_error(stream: IOStream) -> None:
    """Trick 4, when the connection closed: no traceback cycle keeps the listener alive."""
    stream.error = None


def bound_buffers(stream: IOStream, limit: int) -> None:
    """Trick 5: at most `limit` unsent bytes in the kernel and `limit` in the IOStream."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limit)
    stream.max_write_buffer_size = limit


def unbound_buffers(stream: IOStream) -> None:
    """Before the stream's last chunk: those 5 bytes always fit."""
    stream.max_write_buffer_size = None
