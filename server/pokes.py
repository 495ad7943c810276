"""PokeHub: per-space condition queues that wake Server-Sent Event listeners.

A space's entry exists only while it has listeners. A poke bumps the space's
sequence number and notifies its Condition; each listener compares the number with
the last one it answered, so pokes that land while it is busy are not lost and a
burst of commits collapses into one frame.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tornado.ioloop import IOLoop
from tornado.locks import Condition

from server import metrics

# Every frame is encoded once, here; each listener writes the same bytes object.
POKE = b"data: poke\n\n"
BEAT = b"data: beat\n\n"


def hello_frame() -> bytes:
    # A random reconnect delay so a restart does not bring every browser back at once.
    return b"retry: %d\ndata: hello\n\n" % random.randint(1000, 5000)


@dataclass
class SpaceChannel:
    cond: Condition = field(default_factory=Condition)
    seq: int = 0
    listeners: int = 0
    waking: bool = False


class PokeHub:
    def __init__(self) -> None:
        self._spaces: dict[str, SpaceChannel] = {}
        self.listeners = 0
        self.closing = False
        # Notified whenever a listener comes or goes: tests and shutdown wait on it.
        self.changed = Condition()

    def poke(self, space_id: str) -> None:
        """Called after a commit changed space_id (never before)."""
        channel = self._spaces.get(space_id)
        if channel is None:
            return
        channel.seq += 1
        if not channel.waking:
            # Wake the listeners on the next loop turn, so the pushes of this commit are
            # answered before a thousand listeners' writes, not behind them.
            channel.waking = True
            IOLoop.current().add_callback(self._wake, channel)

    @staticmethod
    def _wake(channel: SpaceChannel) -> None:
        channel.waking = False
        channel.cond.notify_all()
        metrics.pokes_sent(channel.listeners)

    @contextmanager
    def listen(self, space_id: str) -> Iterator[SpaceChannel]:
        channel = self._spaces.get(space_id)
        if channel is None:
            channel = self._spaces[space_id] = SpaceChannel()
        channel.listeners += 1
        self.listeners += 1
        self.changed.notify_all()
        try:
            yield channel
        finally:
            channel.listeners -= 1
            self.listeners -= 1
            if channel.listeners == 0:
                del self._spaces[space_id]
            self.changed.notify_all()

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

    def close_all(self) -> None:
        """Wake every listener; they end their streams (shutdown)."""
        self.closing = True
        for channel in self._spaces.values():
            channel.seq += 1
            channel.cond.notify_all()

    async def close(self, timeout: float = 10.0) -> bool:
        """close_all, then wait for every stream to have ended; False on timeout."""
        self.close_all()
        return await self.wait_until(lambda: self.listeners == 0, timeout)
