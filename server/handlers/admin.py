"""The admin inspector: JSON APIs under /admin/api/ and the pages that use them.

Routed only when Settings.admin_token is set (otherwise /admin is a plain 404).
APIs take `Authorization: Bearer <token>`; the pages use a signed, HTTP-only cookie
set by a login form. Cookie-authenticated writes also need the X-Admin-Request
header, which a cross-site form cannot send.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import tornado.web
from tornado.web import create_signed_value, decode_signed_value

from server import metrics
from server.admin_store import AdminStore, check_limit, check_offset, check_search
from server.config import Settings
from server.handlers.base import JSONHandler
from server.pokes import PokeHub
from server.protocol import RequestError, check_space_id, json_object
from server.store import Store

COOKIE = "replicache_admin"
COOKIE_DAYS = 1
WRITE_HEADER = "X-Admin-Request"
PAGE_SIZE = 25
ENTRY_PAGE_SIZE = 50
ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "admin_static"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


class FailedAttempts:
    """Wrong tokens per client address: after `limit` within `window` seconds, every
    attempt from there is refused (429) until the window passes. Bounds guessing."""

    def __init__(self, limit: int = 20, window: float = 60.0, addresses: int = 10_000) -> None:
        self.limit, self.window, self.addresses = limit, window, addresses
        self._seen: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, address: str) -> list[float]:
        cutoff = time.monotonic() - self.window
        times = [t for t in self._seen.get(address, []) if t > cutoff]
        if times:
            self._seen[address] = times
        else:
            self._seen.pop(address, None)
        return times

    def blocked(self, address: str) -> bool:
        return len(self._recent(address)) >= self.limit

    def failed(self, address: str) -> None:
        self._seen[address] = [*self._recent(address), time.monotonic()]
        self._seen.move_to_end(address)
        if len(self._seen) > self.addresses:
            self._seen.popitem(last=False)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def cookie_secret(token: str, configured: str) -> str:
    return configured or hmac.new(token.encode(), b"replicache admin cookie", hashlib.sha256).hexdigest()


class AdminHandler(JSONHandler):
    """Authentication and no CORS: the inspector is same-origin only."""

    def initialize(  # type: ignore[override]
        self, store: Store, hub: PokeHub, config: Settings, attempts: FailedAttempts
    ) -> None:
        super().initialize(store, hub, config)
        self.attempts = attempts

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")

    def options(self, *args: Any) -> None:
        raise tornado.web.HTTPError(405)

    @property
    def admin(self) -> AdminStore:
        return AdminStore(self.store, self.hub)

    def _token_ok(self, given: str) -> bool:
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
        # Changing the token logs every cookie out, even with a fixed cookie secret.
        return hashlib.sha256(b"cookie:" + self.config.admin_token.encode()).hexdigest()

    def auth_method(self) -> str | None:
        """Which credential checks out: "bearer", "cookie", or None."""
        header = self.request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            return "bearer" if scheme.lower() == "bearer" and self._token_ok(token.strip()) else None
        raw = self.get_cookie(COOKIE)
        if not raw:
            return None
        value = decode_signed_value(self._secret(), COOKIE, raw, max_age_days=COOKIE_DAYS)
        if value is not None and hmac.compare_digest(value, self._fingerprint().encode()):
            return "cookie"
        return None

    def log_in(self) -> None:
        value = create_signed_value(self._secret(), COOKIE, self._fingerprint())
        self.set_cookie(
            COOKIE,
            value.decode(),
            path="/admin",
            httponly=True,
            secure=self.request.protocol == "https",
            samesite="Strict",
            expires_days=COOKIE_DAYS,
        )

    def log_out(self) -> None:
        self.clear_cookie(COOKIE, path="/admin")


class AdminAPIHandler(AdminHandler):
    def prepare(self) -> None:
        method = self.auth_method()
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
            await self.admin.list_spaces(
                check_search(self.get_query_argument("q", "")),
                check_offset(self.get_query_argument("offset", None)),
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
        self.write_json(await self.admin.space(space_id))

    async def delete(self, space_id: str) -> None:
        await self.admin.delete_space(space_id)
        self.write_json({"deleted": space_id})


class EntriesAPI(AdminAPIHandler):
    async def get(self, space_id: str) -> None:
        self.write_json(
            await self.admin.entries(
                space_id,
                self.get_query_argument("after", ""),
                check_limit(self.get_query_argument("limit", None), ENTRY_PAGE_SIZE),
            )
        )


class ExportAPI(AdminAPIHandler):
    async def get(self, space_id: str) -> None:
        check_space_id(space_id)
        chunks = self.admin.export(space_id)
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


class PageHandler(AdminHandler):
    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", PAGE_CSP)

    def get_template_path(self) -> str:
        return str(ROOT / "templates")

    def get_template_namespace(self) -> dict[str, Any]:
        embedded = metrics.embedded_memory()  # None on a real MongoDB
        return {**super().get_template_namespace(), "when": _when, "dumps": _dumps, "embedded": embedded}

    def login_page(self, message: str = "") -> None:
        self.set_status(401)
        self.render("login.html", message=message)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, RequestError):
            self.error_body = error.body()
            self.set_status(error.status)
            self.render("error.html", status=error.status, message=error.message)
        else:
            super().write_error(status_code, **kwargs)


class SpacesPage(PageHandler):
    async def get(self) -> None:
        if self.auth_method() is None:
            self.login_page()
            return
        q = check_search(self.get_query_argument("q", "").strip())
        offset = check_offset(self.get_query_argument("offset", None))
        page = await self.admin.list_spaces(q, offset, PAGE_SIZE)
        self.render("spaces.html", q=q, page=page, page_size=PAGE_SIZE)


class SpacePage(PageHandler):
    async def get(self, space_id: str) -> None:
        if self.auth_method() is None:
            self.login_page()
            return
        space = await self.admin.space(space_id)
        after = self.get_query_argument("after", "")
        entries = await self.admin.entries(space_id, after, ENTRY_PAGE_SIZE)
        self.render("space.html", space=space, entries=entries, after=after)


class LoginPage(PageHandler):
    def get(self) -> None:
        self.redirect("/admin")

    def post(self) -> None:
        if not self._token_ok(self.get_body_argument("token", "")):
            self.login_page("That token is not right.")
            return
        self.log_in()
        self.redirect("/admin", status=303)


class LogoutPage(PageHandler):
    def post(self) -> None:
        self.log_out()
        self.redirect("/admin", status=303)


def _when(iso: str | None) -> str:
    """2026-11-26T05:04:57.960Z -> 2026-11-26 05:04:57 (UTC; the API keeps the full form)."""
    return "" if not iso else iso[:19].replace("T", " ")


def _dumps(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def admin_routes(deps: dict[str, Any]) -> list[Any]:
    deps = {**deps, "attempts": FailedAttempts()}
    space = r"([^/]+)"
    return [
        (r"/admin/?", SpacesPage, deps),
        (rf"/admin/space/{space}", SpacePage, deps),
        (r"/admin/login", LoginPage, deps),
        (r"/admin/logout", LogoutPage, deps),
        (r"/admin/static/(.*)", tornado.web.StaticFileHandler, {"path": str(STATIC)}),
        (r"/admin/api/spaces", SpacesAPI, deps),
        (rf"/admin/api/spaces/{space}", SpaceAPI, deps),
        (rf"/admin/api/spaces/{space}/entries", EntriesAPI, deps),
        (rf"/admin/api/spaces/{space}/export", ExportAPI, deps),
    ]
