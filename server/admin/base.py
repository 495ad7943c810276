"""AdminHandler, which every admin handler builds on: who is the admin, and no CORS.

APIs take `Authorization: Bearer <token>`; the pages use a signed, HTTP-only cookie set
by the login form, naming a session kept in the database (sessions.py) that logout ends.
Wrong tokens count towards a lockout (lockout.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import tornado.web
from tornado.web import create_signed_value, decode_signed_value

from server.admin.lockout import FailedAttempts
from server.admin.sessions import AdminSessions, logout_token
from server.config import Settings
from server.handlers.base import BaseHandler
from server.lifecycle import Lifecycle
from server.limits import note_forwarding
from server.pokes import PokeHub
from server.protocol import RequestError, bad, check_space_id
from server.store import Store

COOKIE = "replicache_admin"
COOKIE_DAYS = 1
WRITE_HEADER = "X-Admin-Request"
PAGE_SIZE = 25
ENTRY_PAGE_SIZE = 50
MAX_LIMIT = 200
SEARCH = re.compile(r"[A-Za-z0-9_-]{0,64}")


def check_search(text: str) -> str:
    if not SEARCH.fullmatch(text):
        raise bad("search text is at most 64 of A-Z a-z 0-9 _ -", "InvalidSearch")
    return text


def check_limit(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad(f"limit must be an integer from 1 to {MAX_LIMIT}", "InvalidLimit")
    return int(raw)


def check_cursor(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) > 2**53:
        raise bad("before must be a non-negative integer (a page's `next`)", "InvalidCursor")
    return int(raw)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def cookie_secret(token: str, configured: str) -> str:
    return configured or hmac.new(token.encode(), b"replicache admin cookie", hashlib.sha256).hexdigest()


class AdminHandler(BaseHandler):
    """Authentication and no CORS: the inspector is same-origin only."""

    session_id: str | None = None  # of a valid login cookie, once auth_method() found one

    def initialize(  # type: ignore[override]
        self,
        store: Store,
        hub: PokeHub,
        config: Settings,
        lifecycle: Lifecycle,
        attempts: FailedAttempts,
        sessions: AdminSessions,
    ) -> None:
        super().initialize(store, hub, config, lifecycle)
        self.attempts = attempts
        self.sessions = sessions

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")

    def options(self, *args: Any) -> None:
        raise tornado.web.HTTPError(405)

    async def space_view(self, space_id: str) -> dict[str, Any]:
        view = await self.store.admin.space(check_space_id(space_id))
        return {**view, "listeners": self.hub.listener_count(space_id)}

    async def spaces_page(self, q: str, before: int | None, limit: int) -> dict[str, Any]:
        page = await self.store.admin.list_spaces(q, before, limit)
        for space in page["spaces"]:
            space["listeners"] = self.hub.listener_count(space["spaceID"])
        return page

    def token_ok(self, given: str) -> bool:
        """Whether `given` is the admin token; a wrong one counts towards the lockout."""
        note_forwarding(self)  # the lockout counts per address: say if it cannot see clients
        address = self.request.remote_ip or ""
        if self.attempts.blocked(address):
            raise RequestError(429, "TooManyAttempts", "too many wrong tokens; wait a minute")
        # Hash both sides: compare_digest is constant-time only for equal lengths.
        if hmac.compare_digest(_digest(given), _digest(self.config.admin_token)):
            return True
        self.attempts.failed(address)
        return False

    def signing_secret(self) -> str:
        return cookie_secret(self.config.admin_token, self.config.cookie_secret)

    def _fingerprint(self) -> str:
        # Changing the token logs every session out, even with a fixed cookie secret.
        return hmac.new(
            self.signing_secret().encode(), b"token:" + self.config.admin_token.encode(), "sha256"
        ).hexdigest()

    async def auth_method(self) -> str | None:
        """Which credential checks out: "bearer", "cookie", or None."""
        header = self.request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            return "bearer" if scheme.lower() == "bearer" and self.token_ok(token.strip()) else None
        session_id = self._cookie_session()
        if session_id is not None and await self.sessions.valid(session_id, self._fingerprint()):
            self.session_id = session_id
            return "cookie"
        return None

    def _cookie_session(self) -> str | None:
        raw = self.get_cookie(COOKIE)
        value = raw and decode_signed_value(self.signing_secret(), COOKIE, raw, max_age_days=COOKIE_DAYS)
        return value.decode() if value else None

    def get_template_namespace(self) -> dict[str, Any]:
        token = logout_token(self.signing_secret(), self.session_id) if self.session_id else ""
        return {**super().get_template_namespace(), "logout_token": token}

    async def log_in(self) -> None:
        session_id = await self.sessions.start(self._fingerprint())
        value = create_signed_value(self.signing_secret(), COOKIE, session_id)
        self.set_cookie(
            COOKIE,
            value.decode(),
            path="/admin",
            httponly=True,
            secure=self.request.protocol == "https",
            samesite="Strict",
            expires_days=COOKIE_DAYS,
        )

    async def log_out(self) -> None:
        if self.session_id is not None:
            await self.sessions.end(self.session_id)
        self.clear_cookie(COOKIE, path="/admin")
