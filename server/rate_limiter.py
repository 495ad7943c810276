"""RateLimiter: token buckets by key, in memory (one process), the oldest forgotten first."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

MAX_BUCKETS = 100_000


class RateLimiter:
    """A token bucket per key: `burst` at once, then `rate` per second (pushes per client
    group, user and address; the public demo's spaces and tokens per address)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def wait(self, key: Hashable) -> float:
        """0 if one may go now, else the seconds until one may; counts nothing."""
        tokens, _ = self._refilled(key, self.clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, key: Hashable) -> float:
        """0 if one may go now (and count it), else the seconds until one may."""
        now = self.clock()
        tokens, _ = self._refilled(key, now)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets.pop(key, None)
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_BUCKETS:  # the least recently seen bucket has refilled most
            self._buckets.popitem(last=False)
        return wait

    def _refilled(self, key: Hashable, now: float) -> tuple[float, float]:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate), now
