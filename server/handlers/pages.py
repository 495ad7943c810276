"""The counter app: GET / makes a space, GET /space/<id> serves the page, and
/static/dist/ serves the bundle that `node static/build.mjs` wrote.

An unknown space id gets a 404 page with a link to a new space rather than being
created on sight: a mistyped or stale link (say, after the database was reset) should
say so, not silently start an empty counter.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import tornado.web
from tornado.escape import xhtml_escape

from server.auth import authorize, service_of
from server.config import Settings
from server.handlers.base import BaseHandler, JSONHandler, StaticHandler
from server.handlers.errors import ErrorAnswer
from server.lifecycle import Lifecycle
from server.pokes import PokeHub
from server.protocol import RequestError, check_space_id
from server.store import Store

log = logging.getLogger(__name__)

DIST = Path(__file__).resolve().parents[2] / "static" / "dist"
IMMUTABLE = "public, max-age=31536000, immutable"
# Everything the page loads comes from this server; nothing from the internet.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


class Bundle:
    """The built client, as described by dist/manifest.json; re-read after a rebuild."""

    def __init__(self, dist: Path) -> None:
        self.dist = dist
        self._stamp: int | None = None
        self._problem = ""
        self._page: bytes | None = None
        self._assets: dict[str, str] = {}
        self._hashed: frozenset[str] = frozenset()

    def _load(self) -> None:
        try:
            stamp = (self.dist / "manifest.json").stat().st_mtime_ns
            if stamp == self._stamp:
                return
            manifest = json.loads((self.dist / "manifest.json").read_text())
            self._page = (self.dist / manifest["page"]).read_bytes()
            self._assets = dict(manifest["assets"])
            self._hashed = frozenset(manifest["hashed"])
            self._stamp, self._problem = stamp, ""
        except (OSError, ValueError, KeyError, TypeError) as e:  # not built, or mid-rebuild
            if str(e) != self._problem:  # once per problem, not once per request
                log.warning("client bundle unavailable in %s: %s", self.dist, e)
            self._problem = str(e)
            self._stamp, self._page, self._assets, self._hashed = None, None, {}, frozenset()

    def page(self) -> bytes | None:
        """The app's HTML, or None when the client is not built."""
        self._load()
        return self._page

    def asset(self, name: str) -> str | None:
        """URL of a built entry point ("style.css"), or None."""
        self._load()
        hashed = self._assets.get(name)
        return None if hashed is None else f"/static/dist/{hashed}"

    def is_hashed(self, name: str) -> bool:
        self._load()
        return name in self._hashed


class CounterPageHandler(BaseHandler):
    """The counter app's HTML pages: same-origin only, never cached, errors as small
    HTML pages."""

    def initialize(  # type: ignore[override]
        self, store: Store, hub: PokeHub, config: Settings, lifecycle: Lifecycle, bundle: Bundle
    ) -> None:
        super().initialize(store, hub, config, lifecycle)
        self.bundle = bundle

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    def options(self, *args: Any) -> None:
        raise tornado.web.HTTPError(405)  # same-origin pages: no CORS preflight to answer

    def write_html(self, body: bytes | str) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", PAGE_CSP)
        self.finish(body)

    def write_answer(self, answer: ErrorAnswer) -> None:
        self.message_page(HTTPStatus(answer.status).phrase, answer.message)

    def message_page(self, title: str, message: str) -> None:
        style = self.bundle.asset("style.css")
        link = f'<link rel="stylesheet" href="{style}">' if style else ""
        auth = service_of(self)
        open_to_all = not auth.on or auth.demo is not None  # else GET / needs credentials
        link_home = '<p><a id="new-space" href="/">Start a new space</a></p>' if open_to_all else ""
        self.write_html(
            "<!doctype html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{xhtml_escape(title)} · Counter</title>{link}</head>"
            f'<body><main class="card"><h1>{xhtml_escape(title)}</h1>'
            f'<p id="message">{xhtml_escape(message)}</p>{link_home}</main></body></html>\n'
        )


SIGN_IN_NEEDED = (
    "This server requires sign-in: spaces are made by your app (createSpace with a token),"
    " or by anyone when the operator runs it with --public-demo."
)


class NewSpaceHandler(CounterPageHandler):
    """GET /: a new space, by createSpace's rules (with auth on: an any-space token),
    or for anyone (rate-limited) with --public-demo."""

    async def get(self) -> None:
        demo = service_of(self).demo
        if demo is not None:
            demo.admit(self, "space")
        else:
            try:
                await authorize(self, None)
            except RequestError as e:
                if e.status != 401:
                    raise
                raise RequestError(401, "Unauthorized", SIGN_IN_NEEDED) from None
        space_id = await self.store.create_space()
        args = urlencode(parse_qsl(self.request.query))  # kept, e.g. ?pullInterval=off
        query = f"?{args}" if args else ""
        self.set_header("Cache-Control", "no-store")
        self.redirect(f"/space/{space_id}{query}", status=303)


class SpacePageHandler(CounterPageHandler):
    async def get(self, raw_id: str) -> None:
        space_id = check_space_id(raw_id)
        if not await self.store.space_exists(space_id):
            self.set_status(404)
            self.message_page(
                "No such space",
                f'There is no space "{space_id}" on this server. The link may be mistyped,'
                " or the server's data was reset.",
            )
            return
        page = self.bundle.page()
        if page is None:
            self.set_status(503)
            self.message_page(
                "App not built",
                "The counter app has not been built: run `make run`, or `npm ci && npm run build`.",
            )
            return
        demo = service_of(self).demo
        if demo is not None:  # the operator opted in: hand this visitor a token for this space
            token = xhtml_escape(demo.token(self, space_id))
            url = xhtml_escape(f"/space/{space_id}/auth")
            meta = (
                f'<meta name="replicache-auth" content="{token}">'
                f'<meta name="replicache-auth-url" content="{url}">'
            )
            page = page.replace(b"</head>", meta.encode() + b"</head>", 1)
        self.write_html(page)


class SpaceAuthHandler(JSONHandler):
    """GET /space/<id>/auth (--public-demo only): a fresh token for the page's `getAuth`."""

    def options(self, *args: Any) -> None:
        raise tornado.web.HTTPError(405)  # for the same-origin page only

    async def get(self, raw_id: str) -> None:
        space_id = check_space_id(raw_id)
        self.set_header("Cache-Control", "no-store")
        await self.require_space(space_id)
        demo = service_of(self).demo
        assert demo is not None  # routed only then
        self.write_json({"auth": demo.token(self, space_id)})


class DistHandler(StaticHandler):
    """Hashed bundle files are cached for a year; anything else is revalidated."""

    def initialize(self, path: str, bundle: Bundle) -> None:  # type: ignore[override]
        super().initialize(path)
        self.bundle = bundle

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        return 0  # Cache-Control is set below, for every file

    def set_extra_headers(self, path: str) -> None:
        hashed = self.bundle.is_hashed(path)
        self.set_header("Cache-Control", IMMUTABLE if hashed else "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")


def routes(deps: dict[str, Any], dist: Path = DIST) -> list[tuple[Any, ...]]:
    bundle = Bundle(dist)
    pages = {**deps, "bundle": bundle}
    demo = [(r"/space/([^/]*)/auth", SpaceAuthHandler, deps)] if deps["config"].public_demo else []
    return [
        (r"/", NewSpaceHandler, pages),
        (r"/space/([^/]*)", SpacePageHandler, pages),
        *demo,
        (r"/static/dist/(.*)", DistHandler, {"path": str(dist), "bundle": bundle}),
    ]
