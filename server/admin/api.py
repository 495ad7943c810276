"""The admin's JSON API under /admin/api/: spaces, a space, its entries, its export, and
the live view's poke stream. Authentication first: the token (Bearer) or the login
cookie; a cookie-authenticated write also needs the X-Admin-Request header, which a
cross-site form cannot send. The server-side writes are in writes.py.
"""

from __future__ import annotations

from typing import Any

from server.admin.base import (
    ENTRY_PAGE_SIZE,
    PAGE_SIZE,
    WRITE_HEADER,
    AdminHandler,
    check_cursor,
    check_limit,
    check_search,
)
from server.handlers.base import JSONHandler
from server.handlers.poke import PokeHandler
from server.protocol import RequestError, check_space_id, json_object


class AdminAPIHandler(AdminHandler, JSONHandler):
    async def prepare(self) -> None:
        method = await self.auth_method()
        if method is None:
            raise RequestError(
                401,
                "Unauthorized",
                "send Authorization: Bearer <admin token>",
                headers={"WWW-Authenticate": 'Bearer realm="admin"'},
            )
        if (
            method == "cookie"
            and self.request.method not in ("GET", "HEAD")
            and not self.request.headers.get(WRITE_HEADER)
        ):
            raise RequestError(
                403, "Forbidden", f"cookie-authenticated writes need the {WRITE_HEADER} header"
            )


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


def routes(deps: dict[str, Any], space: str) -> list[Any]:
    return [
        (r"/admin/api/pokes", PokesAPI, deps),
        (r"/admin/api/spaces", SpacesAPI, deps),
        (rf"/admin/api/spaces/{space}", SpaceAPI, deps),
        (rf"/admin/api/spaces/{space}/entries", EntriesAPI, deps),
        (rf"/admin/api/spaces/{space}/export", ExportAPI, deps),
    ]
