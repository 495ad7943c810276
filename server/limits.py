"""Request limits: body size (413) and per-client-group push rate (429)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from server.protocol import RequestError

MAX_BUCKETS = 100_000


def body_too_large(limit: int) -> RequestError:
    return RequestError(413, "BodyTooLarge", f"request body is larger than {limit} bytes")


class LimitedBody:
    """Mixin for @stream_request_body JSON handlers: refuses a body over
    body_limit() (config.max_body_bytes) with 413 JSON before it is buffered whole.

    A declared Content-Length is refused in prepare(), before any body is read; a
    chunked body is refused as soon as the received bytes pass the limit. A handler
    may allow more (body_limit) or consume the chunks as they arrive (take)."""

    config: Any
    request: Any

    def body_limit(self) -> int:
        return int(self.config.max_body_bytes)

    def take(self, chunk: bytes) -> None:
        """Keep a chunk of the body, within the limit, for json_body()."""
        self._chunks.append(chunk)

    async def prepare(self) -> None:
        pending = super().prepare()  # type: ignore[misc]
        if pending is not None:  # another prepare() in the handler's bases may be async
            await pending
        self._chunks: list[bytes] = []
        self._size = 0
        limit = self.body_limit()
        length = self.request.headers.get("Content-Length", "")
        # Counting is ours: the connection's own cap would answer a bare 400 and close.
        self.request.connection.set_max_body_size(2**62)
        if length.isdigit() and int(length) > limit:
            raise body_too_large(limit)

    def data_received(self, chunk: bytes) -> None:
        if self._finished:  # type: ignore[attr-defined]
            return
        self._size += len(chunk)
        if self._size > self.body_limit():
            self._chunks = []
            error = body_too_large(self.body_limit())
            # Tornado stops reading and closes the connection after this response.
            self.send_error(413, exc_info=(RequestError, error, None))  # type: ignore[attr-defined]
            return
        self.take(chunk)

    def json_body(self, strict: bool = True) -> Any:
        self.request.body = b"".join(self._chunks)
        self._chunks = []
        return super().json_body(strict)  # type: ignore[misc]


class PushLimiter:
    """A token bucket per client group: `burst` pushes at once, then `rate` per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """0 if a push may go now (and count it), else the seconds until one may."""
        now = self.clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_BUCKETS:  # the least recently seen bucket has refilled most
            self._buckets.popitem(last=False)
        return wait


def push_limiter(handler: Any) -> PushLimiter | None:
    """The application's limiter, made on first use; None when push_rate is 0 (off)."""
    config = handler.config
    if config.push_rate <= 0:
        return None
    settings = handler.application.settings
    if "push_limiter" not in settings:
        settings["push_limiter"] = PushLimiter(config.push_rate, config.push_burst)
    return settings["push_limiter"]


def rate_limited(handler: Any, client_group_id: str) -> bool:
    """Answers 429 with Retry-After (and returns True) when the group is over its rate."""
    limiter = push_limiter(handler)
    wait = 0.0 if limiter is None else limiter.take(client_group_id)
    if not wait:
        return False
    handler.set_status(429)
    handler.set_header("Retry-After", str(max(1, math.ceil(wait))))
    handler.write_json(
        {"error": "RateLimited", "message": f"too many pushes from this client group; retry in {wait:.1f}s"}
    )
    return True
