"""Lifecycle: one server's state, serving or shutting down.

SyncServer makes one and hands it to every handler (through make_app). Once close() is
called, new requests are refused with 503 ShuttingDown (so draining the queued pushes
comes to an end), /readyz says so, and a poke listener ends its stream the next time it
wakes; SyncServer.close wakes them all right after (PokeHub.wake_all). stop_task: how its
background tasks (the watcher, client expiry) are made to end.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Lifecycle:
    __slots__ = ("_closing",)

    def __init__(self) -> None:
        self._closing = False

    @property
    def closing(self) -> bool:
        """True once shutdown began; it never turns back."""
        return self._closing

    def close(self) -> None:
        self._closing = True


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel a background task and wait until it has ended. One cancel is not always
    enough: PyMongo's server selection waits in asyncio.wait_for, which in Python 3.11
    swallows a cancel that lands as its wait ends (gh-86296). Seen as a worker that never
    stopped after its parent and its database were killed, about 1 run in 10."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
