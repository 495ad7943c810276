"""Lifecycle: one server's state, serving or shutting down.

SyncServer makes one and hands it to every handler (through make_app). Once close() is
called, new requests are refused with 503 ShuttingDown (so draining the queued pushes
comes to an end), /readyz says so, and a poke listener ends its stream the next time it
wakes; SyncServer.close wakes them all right after (PokeHub.wake_all).
"""

from __future__ import annotations


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
