"""Request limits: body size (413), bodies held at once (503), push rate (429), and
per-address counts (poke listeners). One instance of each per application."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from server.connections import TrustedProxies, address_key
from server.protocol import RequestError
from server.rate_limiter import RateLimiter

log = logging.getLogger(__name__)

# spaceExists and createSpace take {"spaceID": "<64 characters>"}: a few KB is plenty, and
# a 5.2 MB body of escaped strings cost 0.45 s of event loop to parse (issue 18).
SMALL_BODY_BYTES = 4096


def body_too_large(limit: int) -> RequestError:
    return RequestError(413, "BodyTooLarge", f"request body is larger than {limit} bytes")


def _shared(handler: Any, name: str, make: Callable[[], Any]) -> Any:
    """The application's one `name` object, made on first use."""
    settings = handler.application.settings
    if name not in settings:
        settings[name] = make()
    return settings[name]


class BodyBudget:
    """Body bytes held by requests being read. A request may always go when nothing else is
    held (else a limit below MAX_BODY_BYTES would refuse the largest body forever)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held and self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size


def server_busy() -> RequestError:
    return RequestError(503, "ServerBusy", "this server is reading too many request bodies; retry")


class LimitedBody:
    """Mixin for @stream_request_body JSON handlers.

    - A body over `max_body` (default config.max_body_bytes) is refused with 413 JSON
      before it is buffered: from Content-Length in prepare(), or as chunks pass it.
    - Bodies held at once across requests are bounded (config.body_buffer_bytes): 503.
    - Lingering: an answer sent before the whole body has arrived (413, or a 401 or 503
      from prepare) goes out at once, then the rest of the body is read and dropped (up
      to config.linger_bytes, within config.body_timeout) before the request ends. Closing
      with unread bytes makes the kernel send a reset, which can destroy the answer before
      the client reads it: a 12 MB push saw ECONNRESET, never its 413 (issue 11).
    - A handler may allow more (body_limit) or consume the chunks as they arrive (take).
    """

    config: Any
    request: Any
    max_body: int | None = None

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)  # type: ignore[misc]
        self._chunks: list[bytes] = []
        self._size = 0  # body bytes received
        self._held = 0  # of BodyBudget
        length = self.request.headers.get("Content-Length", "")
        self._length = int(length) if length.isdigit() else None
        # Counting is ours (prepare, data_received): the connection's own cap would answer
        # a bare 400 and close, even after an early answer of ours.
        self.request.connection.set_max_body_size(2**62)
        # With Expect: 100-continue Tornado would send its "100 Continue" after our early
        # answer; such a client waits for it and sends no body, so nothing needs dropping.
        self._lingering = bool(self._length) and "Expect" not in self.request.headers
        if self._lingering:
            self.request.connection.finish = self._finish_when_read

    def body_limit(self) -> int:
        return self.config.max_body_bytes if self.max_body is None else self.max_body

    def take(self, chunk: bytes) -> None:
        """Keep a chunk of the body, within the limit, for json_body()."""
        self._chunks.append(chunk)

    async def prepare(self) -> None:
        pending = super().prepare()  # type: ignore[misc]
        if pending is not None:  # another prepare() in the handler's bases may be async
            await pending
        await self.authenticate()  # before any body byte is read: a stranger's is never read
        limit = self.body_limit()
        if self._length is not None and self._length > limit:
            raise body_too_large(limit)
        if self._length:
            self._hold(self._length)

    def _hold(self, size: int) -> None:
        if not self._budget().take(size):
            raise server_busy()
        self._held += size

    async def authenticate(self) -> None:
        """Checks credentials (server/auth: SpaceAuth, CreateAuth); open endpoints keep this no-op."""

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._finished:  # type: ignore[attr-defined]
            if self._lingering and self._size >= (self._length or 0):  # the last of a dropped body
                self._end_request()
            return
        limit = self.body_limit()
        error = None
        if self._size > limit:
            error = body_too_large(limit)
        elif self._length is None:  # chunked: held as it comes
            try:
                self._hold(len(chunk))
            except RequestError as busy:
                error = busy
        if error is not None:
            self._chunks = []
            self.send_error(error.status, exc_info=(RequestError, error, None))  # type: ignore[attr-defined]
            return
        self.take(chunk)

    def _finish_when_read(self) -> None:
        """The response is written; end the request now, or once the body is dropped."""
        remaining = (self._length or 0) - self._size
        if remaining <= 0 or remaining > self.config.linger_bytes:
            self._end_request()
        else:
            self.request.connection.stream.set_nodelay(True)  # the answer goes out now

    def _end_request(self) -> None:
        self._unpatch()
        self.request.connection.finish()

    def _unpatch(self) -> None:
        """Drop the connection's reference to this handler: a cycle only the collector breaks."""
        if self._lingering:
            self._lingering = False
            del self.request.connection.finish

    def json_body(self, strict: bool = True) -> Any:
        self.request.body = b"".join(self._chunks)
        self._chunks = []
        return super().json_body(strict)  # type: ignore[misc]

    def on_finish(self) -> None:
        self._give_back()
        super().on_finish()  # type: ignore[misc]

    def on_connection_close(self) -> None:
        self._unpatch()
        self._give_back()
        super().on_connection_close()  # type: ignore[misc]

    def _give_back(self) -> None:
        if self._held:
            self._budget().give_back(self._held)
            self._held = 0

    def _budget(self) -> BodyBudget:
        return _shared(self, "body_budget", lambda: BodyBudget(self.config.body_buffer_bytes))


class SmallBody(LimitedBody):
    max_body = SMALL_BODY_BYTES


def push_limiters(handler: Any) -> tuple[RateLimiter, RateLimiter] | None:
    """The application's limiters (per group, per requester); None when push_rate is 0."""
    config = handler.config
    if config.push_rate <= 0:
        return None
    share = max(1, config.push_user_groups)
    return _shared(
        handler,
        "push_limiters",
        lambda: (
            RateLimiter(config.push_rate, config.push_burst),
            RateLimiter(config.push_rate * share, config.push_burst * share),
        ),
    )


def check_push_rate(handler: Any, user_id: str | None, client_group_id: str) -> None:
    """429 RateLimited, with Retry-After, when the push is over a rate.

    Buckets: the client group, keyed by (user, group) so that no one's pushes count
    against another user's group; the user; and the client address, so that a fresh
    group id per push gains nothing. A push counts against all of them or none."""
    limiters = push_limiters(handler)
    if limiters is None:
        return
    group, requester = limiters
    buckets = [(group, (user_id, client_group_id))]
    if user_id is not None:
        buckets.append((requester, ("user", user_id)))
    address = client_key(handler)
    if address is not None:
        buckets.append((requester, ("address", address)))
    wait = max(limiter.wait(key) for limiter, key in buckets)
    if wait:
        raise RequestError(
            429,
            "RateLimited",
            f"too many pushes from this client; retry in {wait:.1f}s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    for limiter, key in buckets:
        limiter.take(key)


def note_forwarding(handler: Any) -> None:
    """Once per process: say that forwarding headers from an untrusted peer were ignored.
    Behind a proxy missing from TRUSTED_PROXIES every client looks like the proxy, and
    shares its per-address limits."""
    headers = handler.request.headers
    if "X-Forwarded-For" not in headers and "X-Real-Ip" not in headers:
        return
    settings = handler.application.settings
    if settings.get("forwarding_noted"):
        return
    address = getattr(handler.request.connection.context, "address", None)
    peer = address[0] if isinstance(address, tuple) else ""
    if not _proxies(handler).trusts(peer):
        settings["forwarding_noted"] = True
        log.warning(
            "X-Forwarded-For/X-Real-Ip from %s ignored: it is not in TRUSTED_PROXIES (if it is your"
            " proxy, list it there, or every client counts as that one address)",
            peer,
        )


def client_key(handler: Any) -> str | None:
    """The request's client address for per-address limits (see connections.address_key);
    None for a trusted proxy's own requests: it carries many clients."""
    ip = handler.request.remote_ip or ""
    return None if _proxies(handler).trusts(ip) else address_key(ip)


def _proxies(handler: Any) -> TrustedProxies:
    return _shared(handler, "trusted_proxies", lambda: TrustedProxies(handler.config.trusted_proxies))


class AddressCounts:
    """How many of something (poke listeners) each client address holds."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def count(self, key: str) -> int:
        return self._counts[key]

    def hold(self, key: str | None) -> _Held:
        """A context manager that counts one for `key` while it lasts (None: nothing)."""
        return _Held(self._counts, key)


class _Held:
    __slots__ = ("counts", "key")  # one per open poke stream: small, and no generator frame

    def __init__(self, counts: Counter[str], key: str | None) -> None:
        self.counts, self.key = counts, key

    def __enter__(self) -> None:
        if self.key is not None:
            self.counts[self.key] += 1

    def __exit__(self, *exc: object) -> None:
        if self.key is not None:
            self.counts[self.key] -= 1
            if self.counts[self.key] <= 0:
                del self.counts[self.key]


def listener_counts(handler: Any) -> AddressCounts:
    return _shared(handler, "listener_counts", AddressCounts)
