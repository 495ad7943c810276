"""GET /api/replicache/poke?spaceID=…: a Server-Sent Events stream of pokes.

Each listener is a coroutine asleep on its space's Condition (heartbeat as timeout);
pokes are written to its connection by the hub (server/pokes.py) without waking it.
Writes are never awaited: a frame goes into the connection's buffers, whose size is
capped (poke_buffer_bytes), so a client that stops reading fills its own buffer and is
dropped, and never holds up anyone else. What the stream does behind Tornado's back to
stay small and fast: server/sse_fastpath.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from server import sse_fastpath
from server.auth import authorize
from server.handlers.base import JSONHandler
from server.limits import client_key, listener_counts
from server.pokes import BEAT, hello_frame
from server.protocol import RequestError
from server.sse_fastpath import Listener


class PokeHandler(JSONHandler):
    _wait: Any = None
    _closed = False

    async def get(self) -> None:
        space_id = self.space_id()
        await self.check_credentials(space_id)
        if not self.hub.listener_count(space_id):  # else a listener's check already found it
            await self.require_space(space_id)
        self.check_caps(space_id)  # no await from here on until listen(): the caps hold
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache, no-transform")
        self.set_header("X-Accel-Buffering", "no")
        heartbeat = timedelta(seconds=self.config.heartbeat_seconds)
        stream = self.request.connection.stream  # type: ignore[attr-defined]
        listener = Listener(stream, chunked=sse_fastpath.is_chunked(self))
        address = client_key(self)
        with self.hub.listen(space_id, listener) as channel, listener_counts(self).hold(address):
            self.write(hello_frame())
            self.flush()
            if stream.closed():  # the client hung up before its stream began
                return
            sse_fastpath.bound_buffers(stream, self.config.poke_buffer_bytes)
            sse_fastpath.slim_idle_handler(self)  # the headers are sent
            while not self.lifecycle.closing and not channel.ended:
                self._wait = channel.cond.wait(timeout=heartbeat)
                try:
                    notified = await self._wait
                except asyncio.CancelledError:  # on_connection_close
                    return
                self._wait = None
                if self._closed or stream.closed():
                    return
                if not notified:
                    listener.send(BEAT)
        sse_fastpath.unbound_buffers(stream)
        self.finish()  # shutdown or a deleted space: a clean end of the chunked stream

    async def check_credentials(self, space_id: str) -> None:
        """The app's credentials for the space (the admin's live view takes its own login)."""
        await authorize(self, space_id, query=True)

    def check_caps(self, space_id: str) -> None:
        per_address = self.config.poke_max_per_address
        address = client_key(self)
        if per_address and address is not None and listener_counts(self).count(address) >= per_address:
            raise RequestError(
                429, "TooManyListeners", f"this address holds {per_address} poke listeners already"
            )
        if self.hub.listener_count(space_id) >= self.config.poke_max_per_space:
            raise RequestError(
                429,
                "TooManyListeners",
                f"space {space_id!r} has {self.config.poke_max_per_space} poke listeners already",
            )
        if self.hub.listeners >= self.config.poke_max_listeners:
            raise RequestError(
                503, "ServerFull", "this server holds as many poke listeners as it may; retry later"
            )

    def on_connection_close(self) -> None:
        self._closed = True
        sse_fastpath.forget_close_error(self.request.connection.stream)  # type: ignore[attr-defined]
        if self._wait is not None:
            self._wait.cancel()
        super().on_connection_close()
