"""Admin authentication state: login sessions, and the count of wrong tokens.

Sessions are kept in the database, so logout ends one in every process (a stateless
cookie stayed valid for its whole day after logout, issue 18).

The cookie carries a random session id, signed (HMAC) with the cookie secret; the
database keeps only its SHA-256, so reading the collection gives no usable cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from typing import Any

COLLECTION = "admin_sessions"


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def logout_token(secret: str, session_id: str) -> str:
    """The logout form's CSRF token: only a page of this session can know it."""
    return hmac.new(secret.encode(), b"logout:" + session_id.encode(), hashlib.sha256).hexdigest()


class AdminSessions:
    def __init__(self, store: Any, lifetime_seconds: float) -> None:
        self._store = store
        self.lifetime = lifetime_seconds
        self._indexed = False

    @property
    def sessions(self) -> Any:
        return self._store.collection(COLLECTION)

    async def start(self, fingerprint: str) -> str:
        """A new session for the admin token with this fingerprint; returns its id."""
        now = time.time()
        if not self._indexed:  # expired sessions are found through it, not by a scan
            await self.sessions.create_index("expires")
            self._indexed = True
        await self.sessions.delete_many({"expires": {"$lt": now}})
        session_id = secrets.token_urlsafe(32)
        await self.sessions.insert_one(
            {"_id": _key(session_id), "fp": fingerprint, "expires": now + self.lifetime}
        )
        return session_id

    async def valid(self, session_id: str, fingerprint: str) -> bool:
        """Live, and made for the current token (a changed token logs everyone out)."""
        found = await self.sessions.find_one({"_id": _key(session_id)})
        return (
            found is not None
            and hmac.compare_digest(str(found.get("fp", "")), fingerprint)
            and float(found.get("expires", 0)) > time.time()
        )

    async def end(self, session_id: str) -> None:
        await self.sessions.delete_one({"_id": _key(session_id)})


class FailedAttempts:
    """Wrong tokens per client address: after `limit` within `window` seconds, every
    attempt from there is refused (429) until the window passes. Bounds guessing.

    And in all: after `total` from any addresses within the window, every token attempt
    is refused, so rotating addresses gains nothing past `total` a minute. That also
    refuses the right token for that minute; a logged-in session (cookie) carries on.
    Counts are per process: with --processes N, N times as many (README Threat model)."""

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
