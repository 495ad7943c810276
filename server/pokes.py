"""PokeHub: per-space condition queues that wake Server-Sent Event listeners.

A space's entry exists only while it has listeners. A poke schedules one write of the
pre-encoded `poke` frame to every listener of the space on the next loop turn; pokes
that arrive before it runs coalesce into it, and none after it is lost (each schedules
the next). Handlers sleep on the space's Condition with the heartbeat as timeout and
wake only to send a `beat` or, at shutdown (wake_all), to end their stream. How a frame
reaches a listener's socket: server/sse_fastpath.py.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tornado.ioloop import IOLoop
from tornado.locks import Condition

from server import metrics
from server.sse_fastpath import Listener, frame

log = logging.getLogger(__name__)


# After this many listeners left (and at least half of the peak), give memory back.
RECLAIM_AFTER = 1000
RECLAIM_DELAY = 0.25  # seconds: lets the rest of a wave of hang-ups arrive first


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


MALLOC_TRIM = _malloc_trim()

POKE = frame(b"data: poke\n\n")
BEAT = frame(b"data: beat\n\n")


def hello_frame() -> bytes:
    # A random reconnect delay so a restart does not bring every browser back at once.
    return b"retry: %d\ndata: hello\n\n" % random.randint(1000, 5000)


@dataclass
class SpaceChannel:
    # Notified only at shutdown and when the space is deleted; listeners wait on it with
    # the heartbeat as timeout.
    cond: Condition = field(default_factory=Condition)
    listeners: int = 0
    streams: set[Listener] = field(default_factory=set)
    seq: int = 0  # pokes asked for, coalesced or not (observable in tests)
    waking: bool = False
    ended: bool = False  # the space was deleted: its streams end after a last poke


class Listening:
    """PokeHub.listen's context manager: a slotted object, not a generator, because
    thousands of idle listeners each hold one."""

    __slots__ = ("hub", "space_id", "listener")

    def __init__(self, hub: PokeHub, space_id: str, listener: Listener | None) -> None:
        self.hub, self.space_id, self.listener = hub, space_id, listener

    def __enter__(self) -> SpaceChannel:
        return self.hub._add(self.space_id, self.listener)

    def __exit__(self, *exc: object) -> None:
        self.hub._remove(self.space_id, self.listener)


class PokeHub:
    def __init__(self) -> None:
        self._spaces: dict[str, SpaceChannel] = {}
        self.listeners = 0
        self.reclaims = 0  # times memory was given back (observable in tests)
        self._peak = 0  # most listeners since the last reclaim
        self._reclaim_due = False
        # Notified whenever a listener comes or goes: tests and shutdown wait on it.
        self.changed = Condition()

    def poke(self, space_id: str, version: int | None = None) -> None:
        """Called after a commit changed space_id (never before); the store's commit hook."""
        channel = self._spaces.get(space_id)
        if channel is None:
            return
        channel.seq += 1
        if channel.waking:
            return  # a poke is already due for this space: commits coalesce into it
        # Write on the next loop turn, so the pushes of this commit are answered before a
        # thousand listeners' writes, not behind them.
        channel.waking = True
        IOLoop.current().add_callback(self._wake, channel)

    @staticmethod
    def _wake(channel: SpaceChannel) -> None:
        channel.waking = False
        for listener in list(channel.streams):  # a failed send may remove one
            listener.send(POKE)
        metrics.pokes_sent(channel.listeners)

    def listen(self, space_id: str, listener: Listener | None = None) -> Listening:
        """`with hub.listen(space, listener) as channel:` registers a listener for the
        block (None: count one that only watches `seq`)."""
        return Listening(self, space_id, listener)

    def _add(self, space_id: str, listener: Listener | None) -> SpaceChannel:
        channel = self._spaces.get(space_id)
        if channel is None:
            channel = self._spaces[space_id] = SpaceChannel()
        channel.listeners += 1
        if listener is not None:
            channel.streams.add(listener)
        self.listeners += 1
        self._peak = max(self._peak, self.listeners)
        self.changed.notify_all()
        return channel

    def _remove(self, space_id: str, listener: Listener | None) -> None:
        channel = self._spaces[space_id]
        channel.listeners -= 1
        channel.streams.discard(listener)  # type: ignore[arg-type]
        self.listeners -= 1
        if channel.listeners == 0:
            del self._spaces[space_id]
        gone = self._peak - self.listeners
        if gone >= RECLAIM_AFTER and self.listeners <= self._peak // 2 and not self._reclaim_due:
            self._reclaim_due = True
            IOLoop.current().call_later(RECLAIM_DELAY, self._reclaim)
        self.changed.notify_all()

    def _reclaim(self) -> None:
        """Thousands of connections just ended. A full collection empties the interpreter's
        free lists (which pin the allocator's arenas) and malloc_trim hands freed pages
        back: the server's RSS falls back towards what its remaining listeners need."""
        self._reclaim_due = False
        gone, self._peak = self._peak - self.listeners, self.listeners
        gc.collect()
        if MALLOC_TRIM is not None:
            MALLOC_TRIM(0)
        self.reclaims += 1
        log.info("gave memory back after %d poke listeners left", gone)

    def space_ids(self) -> list[str]:
        """Spaces that have listeners in this process."""
        return list(self._spaces)

    def space_count(self) -> int:
        return len(self._spaces)

    def listener_count(self, space_id: str) -> int:
        channel = self._spaces.get(space_id)
        return 0 if channel is None else channel.listeners

    async def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until done() holds after listeners came or went; False on timeout."""
        deadline = IOLoop.current().time() + timeout
        while not done():
            if not await self.changed.wait(timeout=deadline):
                return done()
        return True

    def end(self, space_id: str) -> None:
        """The space is gone: poke its listeners a last time, then end their streams
        (EventSource reconnects and gets a 404)."""
        channel = self._spaces.get(space_id)
        if channel is not None:
            self.poke(space_id)  # written on the next loop turn, before the streams end
            channel.ended = True
            channel.cond.notify_all()

    def wake_all(self) -> None:
        """Wake every listener now, not at its next heartbeat: at shutdown each one finds
        the server closing (server/lifecycle.py) and ends its stream."""
        for channel in self._spaces.values():
            channel.cond.notify_all()

    async def emptied(self, timeout: float) -> bool:
        """Wait until every stream has ended; False on timeout."""
        return await self.wait_until(lambda: self.listeners == 0, timeout)
