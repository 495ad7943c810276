"""The admin's HTML pages: the spaces, a space, login and logout, and their static files
(/admin/static/, for a logged-in admin only). Templates are in templates/, the script and
styles in static/ (both next to this file).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from server import metrics
from server.admin.base import (
    ENTRY_PAGE_SIZE,
    PAGE_SIZE,
    WRITE_HEADER,
    AdminHandler,
    check_cursor,
    check_search,
)
from server.admin.sessions import logout_token
from server.handlers.base import StaticHandler
from server.handlers.errors import ErrorAnswer
from server.protocol import RequestError

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
LOGIN_CSS = (STATIC / "admin.css").read_text()
LOGIN_CSS_HASH = f"'sha256-{base64.b64encode(hashlib.sha256(LOGIN_CSS.encode()).digest()).decode()}'"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


class AdminPageHandler(AdminHandler):
    """An admin page: rendered from templates/, errors as the error page."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", PAGE_CSP)

    def get_template_path(self) -> str:
        return str(TEMPLATES)

    def get_template_namespace(self) -> dict[str, Any]:
        embedded = metrics.embedded_memory()  # None on a real MongoDB
        return {**super().get_template_namespace(), "when": _when, "dumps": _dumps, "embedded": embedded}

    def check_logout_csrf(self) -> None:
        """Logout's CSRF check: the X-Admin-Request header (scripts) or the form's token."""
        if self.request.headers.get(WRITE_HEADER):
            return
        expected = logout_token(self.signing_secret(), self.session_id or "")
        if not hmac.compare_digest(self.get_body_argument("csrf", ""), expected):
            raise RequestError(403, "Forbidden", "log out from the admin page (its form carries a token)")

    def login_page(self, message: str = "") -> None:
        # Its styles inline (allowed by their hash): /admin/static/ is for logged-in admins.
        self.set_status(401)
        self.set_header(
            "Content-Security-Policy", PAGE_CSP.replace("style-src 'self'", f"style-src {LOGIN_CSS_HASH}")
        )
        self.render("login.html", message=message, css=LOGIN_CSS)

    def write_answer(self, answer: ErrorAnswer) -> None:
        self.render("error.html", status=answer.status, message=answer.message)


class SpacesPage(AdminPageHandler):
    async def get(self) -> None:
        if await self.auth_method() is None:
            self.login_page()
            return
        q = check_search(self.get_query_argument("q", "").strip())
        before = check_cursor(self.get_query_argument("before", None))
        page = await self.spaces_page(q, before, PAGE_SIZE)
        self.render("spaces.html", q=q, page=page, before=before)


class SpacePage(AdminPageHandler):
    async def get(self, space_id: str) -> None:
        if await self.auth_method() is None:
            self.login_page()
            return
        space = await self.space_view(space_id)
        after = self.get_query_argument("after", "")
        entries = await self.store.admin.entries(space_id, after, ENTRY_PAGE_SIZE)
        self.render("space.html", space=space, entries=entries, after=after)


class LoginPage(AdminPageHandler):
    async def get(self) -> None:
        if await self.auth_method() is None:
            self.login_page()
            return
        self.redirect("/admin")

    async def post(self) -> None:
        if not self.token_ok(self.get_body_argument("token", "")):
            self.login_page("That token is not right.")
            return
        await self.log_in()
        self.redirect("/admin", status=303)


class LogoutPage(AdminPageHandler):
    async def post(self) -> None:
        method = await self.auth_method()
        if method is None:  # nobody to log out: refused like every admin route
            self.login_page()
            return
        if method == "cookie":
            self.check_logout_csrf()  # another site must not end the session
        await self.log_out()
        self.redirect("/admin", status=303)


class StaticFiles(AdminHandler, StaticHandler):
    """/admin/static/: the pages' script and styles, for a logged-in admin only."""

    def initialize(self, path: str, **deps: Any) -> None:  # type: ignore[override]
        AdminHandler.initialize(self, **deps)
        StaticHandler.initialize(self, path)

    async def prepare(self) -> None:
        if await self.auth_method() is None:
            raise RequestError(401, "Unauthorized", "log in at /admin first")


def _when(iso: str | None) -> str:
    """2026-11-26T05:04:57.960Z -> 2026-11-26 05:04:57 (UTC; the API keeps the full form)."""
    return "" if not iso else iso[:19].replace("T", " ")


def _dumps(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def routes(deps: dict[str, Any], space: str) -> list[Any]:
    return [
        (r"/admin/?", SpacesPage, deps),
        (rf"/admin/space/{space}", SpacePage, deps),
        (r"/admin/login", LoginPage, deps),
        (r"/admin/logout", LogoutPage, deps),
        (r"/admin/static/(.*)", StaticFiles, {**deps, "path": str(STATIC)}),
    ]
