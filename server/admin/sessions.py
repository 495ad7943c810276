"""Admin login sessions, and the logout form's CSRF token.

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
