"""GET /api/replicache/poke?spaceID=…: a Server-Sent Events stream of pokes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tornado.iostream import StreamClosedError

from server.auth import authorize
from server.handlers.base import JSONHandler
from server.handlers.replicache import require_space
from server.pokes import BEAT, POKE, hello_frame


class PokeHandler(JSONHandler):
    _wait: Any = None
    _closed = False

    async def get(self) -> None:
        space_id = self.space_id()
        authorize(self, space_id, query=True)
        await require_space(self, space_id)
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache, no-transform")
        self.set_header("X-Accel-Buffering", "no")
        heartbeat = timedelta(seconds=self.config.heartbeat_seconds)
        with self.hub.listen(space_id) as channel:
            seen = channel.seq
            frame = hello_frame()
            try:
                while not self._closed:
                    self.write(frame)
                    await self.flush()
                    if channel.seq == seen:
                        self._wait = channel.cond.wait(timeout=heartbeat)
                        await self._wait
                    if self.hub.closing:
                        break
                    frame = POKE if channel.seq != seen else BEAT
                    seen = channel.seq
            except (StreamClosedError, asyncio.CancelledError):
                return
        if not self._closed:
            self.finish()

    def on_connection_close(self) -> None:
        self._closed = True
        if self._wait is not None:
            self._wait.cancel()
