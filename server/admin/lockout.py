"""The admin lockout: wrong tokens counted per client address and in all."""

from __future__ import annotations

import time
from collections import OrderedDict, deque


class FailedAttempts:
    """Wrong tokens per client address: after `limit` within `window` seconds, every
    attempt from there is refused (429) until the window passes. Bounds guessing.

    And in all: after `total` from any addresses within the window, every token attempt
    is refused, so rotating addresses gains nothing past `total` a minute. That also
    refuses the right token for that minute; a logged-in session (cookie) carries on.
    Counts are per process: with --processes N, N times as many (docs/security.md)."""

    def __init__(
        self, limit: int = 20, total: int = 100, window: float = 60.0, addresses: int = 10_000
    ) -> None:
        self.limit, self.total, self.window, self.addresses = limit, total, window, addresses
        self._seen: OrderedDict[str, list[float]] = OrderedDict()
        self._all: deque[float] = deque()

    def _recent(self, address: str) -> list[float]:
        cutoff = time.monotonic() - self.window
        times = [t for t in self._seen.get(address, []) if t > cutoff]
        if times:
            self._seen[address] = times
        else:
            self._seen.pop(address, None)
        return times

    def blocked(self, address: str) -> bool:
        cutoff = time.monotonic() - self.window
        while self._all and self._all[0] <= cutoff:
            self._all.popleft()
        return len(self._all) >= self.total or len(self._recent(address)) >= self.limit

    def failed(self, address: str) -> None:
        self._all.append(time.monotonic())
        self._seen[address] = [*self._recent(address), time.monotonic()]
        self._seen.move_to_end(address)
        if len(self._seen) > self.addresses:
            self._seen.popitem(last=False)
