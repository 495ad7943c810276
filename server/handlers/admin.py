"""The admin inspector: JSON APIs under /admin/api/ and the pages that use them.

Routed only when Settings.admin_token is set (otherwise /admin is a plain 404).
APIs take `Authorization: Bearer <token>`; the pages use a signed, HTTP-only cookie
set by a login form, naming a session kept in the database (server/admin_auth.py)
that logout ends. Cookie-authenticated writes also need the X-Admin-Request header,
which a cross-site form cannot send; logout takes that or the form's CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import tornado.web
from tornado.web import create_signed_value, decode_signed_value

from server import metrics
from server.admin_auth import AdminSessions, FailedAttempts, logout_token
from server.config import Settings
from server.handlers.base import JSONHandler, StaticHandler, count_refusal
from server.handlers.poke import PokeHandler
from server.limits import note_forwarding
from server.pokes import PokeHub
from server.protocol import RequestError, bad, check_space_id, json_object
from server.store import Store

COOKIE = "replicache_admin"
COOKIE_DAYS = 1
WRITE_HEADER = "X-Admin-Request"
PAGE_SIZE = 25
ENTRY_PAGE_SIZE = 50
MAX_LIMIT = 200
SEARCH = re.compile(r"[A-Za-z0-9_-]{0,64}")
ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "admin_static"
LOGIN_CSS = (STATIC / "admin.css").read_text()
LOGIN_CSS_HASH = f"'sha256-{base64.b64encode(hashlib.sha256(LOGIN_CSS.encode()).digest()).decode()}'"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


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


class AdminHandler(JSONHandler):
    """Authentication and no CORS: the inspector is same-origin only."""

    session_id: str | None = None  # of a valid login cookie, once auth_method() found one

    def initialize(  # type: ignore[override]
        self, store: Store, hub: PokeHub, config: Settings, attempts: FailedAttempts, sessions: AdminSessions
    ) -> None:
        super().initialize(store, hub, config)
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

    def _token_ok(self, given: str) -> bool:
        note_forwarding(self)  # the lockout counts per address: say if it cannot see clients
        address = self.request.remote_ip or ""
        if self.attempts.blocked(address):
            raise RequestError(429, "TooManyAttempts", "too many wrong tokens; wait a minute")
        # Hash both sides: compare_digest is constant-time only for equal lengths.
        if hmac.compare_digest(_digest(given), _digest(self.config.admin_token)):
            return True
        self.attempts.failed(address)
        return False

    def _secret(self) -> str:
        return cookie_secret(self.config.admin_token, self.config.cookie_secret)

    def _fingerprint(self) -> str:
        # Changing the token logs every session out, even with a fixed cookie secret.
        return hmac.new(
            self._secret().encode(), b"token:" + self.config.admin_token.encode(), "sha256"
        ).hexdigest()

    async def auth_method(self) -> str | None:
        """Which credential checks out: "bearer", "cookie", or None."""
        header = self.request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            return "bearer" if scheme.lower() == "bearer" and self._token_ok(token.strip()) else None
        session_id = self._cookie_session()
        if session_id is not None and await self.sessions.valid(session_id, self._fingerprint()):
            self.session_id = session_id
            return "cookie"
        return None

    def _cookie_session(self) -> str | None:
        raw = self.get_cookie(COOKIE)
        value = raw and decode_signed_value(self._secret(), COOKIE, raw, max_age_days=COOKIE_DAYS)
        return value.decode() if value else None

    def get_template_namespace(self) -> dict[str, Any]:
        token = logout_token(self._secret(), self.session_id) if self.session_id else ""
        return {**super().get_template_namespace(), "logout_token": token}

    async def log_in(self) -> None:
        session_id = await self.sessions.start(self._fingerprint())
        value = create_signed_value(self._secret(), COOKIE, session_id)
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


class AdminAPIHandler(AdminHandler):
    async def prepare(self) -> None:
        method = await self.auth_method()
        if method is None:
            raise RequestError(401, "Unauthorized", "send Authorization: Bearer <admin token>")
        if (
            method == "cookie"
            and self.request.method not in ("GET", "HEAD")
            and not self.request.headers.get(WRITE_HEADER)
        ):
            raise RequestError(
                403, "Forbidden", f"cookie-authenticated writes need the {WRITE_HEADER} header"
            )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, RequestError) and error.status == 401:  # send_error cleared headers
            self.set_header("WWW-Authenticate", 'Bearer realm="admin"')
        super().write_error(status_code, **kwargs)


class SpacesAPI(AdminAPIHandler):
    async def get(self) -> None:
        self.write_json(
            await self.spaces_page(
                check_search(self.get_query_argument("q", "")),
                check_cursor(self.get_query_argument("before", None)),
                check_limit(self.get_query_argument("limit", None), PAGE_SIZE),
            )
        )

    async def post(self) -> None:
        body = json_object(self.json_body(), "createSpace")
        wanted = body.get("spaceID") or None
        if wanted is not None:
            check_space_id(wanted)
        self.set_status(201)
        self.write_json({"spaceID": await self.store.create_space(wanted)})


class SpaceAPI(AdminAPIHandler):
    async def get(self, space_id: str) -> None:
        self.write_json(await self.space_view(space_id))

    async def delete(self, space_id: str) -> None:
        # Its listeners get a last poke, then their streams end (a reconnect gets a 404).
        await self.store.delete_space(check_space_id(space_id))
        self.hub.end(space_id)
        self.write_json({"deleted": space_id})


class EntriesAPI(AdminAPIHandler):
    async def get(self, space_id: str) -> None:
        self.write_json(
            await self.store.admin.entries(
                check_space_id(space_id),
                self.get_query_argument("after", ""),
                check_limit(self.get_query_argument("limit", None), ENTRY_PAGE_SIZE),
            )
        )


class ExportAPI(AdminAPIHandler):
    async def get(self, space_id: str) -> None:
        check_space_id(space_id)
        chunks = self.store.admin.export(space_id)
        first = await anext(chunks)  # 404 before any header goes out
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="space-{space_id}.json"')
        self.write(first)
        size = 0
        async for chunk in chunks:
            self.write(chunk)
            size += len(chunk)
            if size > 1 << 16:
                await self.flush()
                size = 0
        self.finish()


class PokesAPI(AdminAPIHandler, PokeHandler):
    """GET /admin/api/pokes?spaceID=: the live view's poke stream, behind the admin login
    (the app's own tokens are not the admin's, and the login cookie is scoped to /admin)."""

    async def check_credentials(self, space_id: str) -> None:
        pass  # prepare() checked the admin's


class StaticFiles(AdminHandler, StaticHandler):
    """/admin/static/: the pages' script and styles, for a logged-in admin only."""

    def initialize(  # type: ignore[override]
        self,
        store: Store,
        hub: PokeHub,
        config: Settings,
        attempts: FailedAttempts,
        sessions: AdminSessions,
        path: str,
    ) -> None:
        AdminHandler.initialize(self, store, hub, config, attempts, sessions)
        StaticHandler.initialize(self, path)

    async def prepare(self) -> None:
        if await self.auth_method() is None:
            raise RequestError(401, "Unauthorized", "log in at /admin first")


class PageHandler(AdminHandler):
    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", PAGE_CSP)

    def get_template_path(self) -> str:
        return str(ROOT / "templates")

    def get_template_namespace(self) -> dict[str, Any]:
        embedded = metrics.embedded_memory()  # None on a real MongoDB
        return {**super().get_template_namespace(), "when": _when, "dumps": _dumps, "embedded": embedded}

    def check_logout_csrf(self) -> None:
        """Logout's CSRF check: the X-Admin-Request header (scripts) or the form's token."""
        if self.request.headers.get(WRITE_HEADER):
            return
        expected = logout_token(self._secret(), self.session_id or "")
        if not hmac.compare_digest(self.get_body_argument("csrf", ""), expected):
            raise RequestError(403, "Forbidden", "log out from the admin page (its form carries a token)")

    def login_page(self, message: str = "") -> None:
        # Its styles inline (allowed by their hash): /admin/static/ is for logged-in admins.
        self.set_status(401)
        self.set_header(
            "Content-Security-Policy", PAGE_CSP.replace("style-src 'self'", f"style-src {LOGIN_CSS_HASH}")
        )
        self.render("login.html", message=message, css=LOGIN_CSS)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, RequestError):
            count_refusal(error)
            self.error_body = error.body()
            self.set_status(error.status)
            self.render("error.html", status=error.status, message=error.message)
        else:
            super().write_error(status_code, **kwargs)


class SpacesPage(PageHandler):
    async def get(self) -> None:
        if await self.auth_method() is None:
            self.login_page()
            return
        q = check_search(self.get_query_argument("q", "").strip())
        before = check_cursor(self.get_query_argument("before", None))
        page = await self.spaces_page(q, before, PAGE_SIZE)
        self.render("spaces.html", q=q, page=page, before=before)


class SpacePage(PageHandler):
    async def get(self, space_id: str) -> None:
        if await self.auth_method() is None:
            self.login_page()
            return
        space = await self.space_view(space_id)
        after = self.get_query_argument("after", "")
        entries = await self.store.admin.entries(space_id, after, ENTRY_PAGE_SIZE)
        self.render("space.html", space=space, entries=entries, after=after)


class LoginPage(PageHandler):
    async def get(self) -> None:
        if await self.auth_method() is None:
            self.login_page()
            return
        self.redirect("/admin")

    async def post(self) -> None:
        if not self._token_ok(self.get_body_argument("token", "")):
            self.login_page("That token is not right.")
            return
        await self.log_in()
        self.redirect("/admin", status=303)


class LogoutPage(PageHandler):
    async def post(self) -> None:
        method = await self.auth_method()
        if method is None:  # nobody to log out: refused like every admin route
            self.login_page()
            return
        if method == "cookie":
            self.check_logout_csrf()  # another site must not end the session
        await self.log_out()
        self.redirect("/admin", status=303)


def _when(iso: str | None) -> str:
    """2026-11-26T05:04:57.960Z -> 2026-11-26 05:04:57 (UTC; the API keeps the full form)."""
    return "" if not iso else iso[:19].replace("T", " ")


def _dumps(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def admin_routes(deps: dict[str, Any]) -> list[Any]:
    from server.handlers import admin_writes  # its handlers build on this module's

    sessions = AdminSessions(deps["store"], COOKIE_DAYS * 86400)
    deps = {**deps, "attempts": FailedAttempts(), "sessions": sessions}
    space = r"([^/]+)"
    return [
        (r"/admin/?", SpacesPage, deps),
        (rf"/admin/space/{space}", SpacePage, deps),
        (r"/admin/login", LoginPage, deps),
        (r"/admin/logout", LogoutPage, deps),
        (r"/admin/static/(.*)", StaticFiles, {**deps, "path": str(STATIC)}),
        (r"/admin/api/pokes", PokesAPI, deps),
        (r"/admin/api/spaces", SpacesAPI, deps),
        (rf"/admin/api/spaces/{space}", SpaceAPI, deps),
        (rf"/admin/api/spaces/{space}/entries", EntriesAPI, deps),
        (rf"/admin/api/spaces/{space}/export", ExportAPI, deps),
        *admin_writes.routes(deps, space),
    ]
