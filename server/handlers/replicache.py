"""The Replicache endpoints: push, pull, createSpace, spaceExists."""

from __future__ import annotations

from server.handlers.base import JSONHandler
from server.protocol import (
    bad,
    check_space_id,
    parse_pull,
    parse_push,
    request_version,
    version_not_supported,
)
from server.store import space_not_found


class PushHandler(JSONHandler):
    async def post(self) -> None:
        space_id = self.space_id()
        body = self.json_body()
        if not isinstance(body, dict):
            raise bad("push body must be a JSON object")
        if request_version(body, "pushVersion") != 1:
            self.write_json(version_not_supported("push"))
            return
        self.write_json(await self.store.push(space_id, parse_push(body)))


class PullHandler(JSONHandler):
    async def post(self) -> None:
        space_id = self.space_id()
        body = self.json_body()
        if not isinstance(body, dict):
            raise bad("pull body must be a JSON object")
        if request_version(body, "pullVersion") != 1:
            self.write_json(version_not_supported("pull"))
            return
        self.write_json(await self.store.pull(space_id, parse_pull(body)))


class CreateSpaceHandler(JSONHandler):
    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body, dict):
            raise bad("createSpace body must be a JSON object")
        wanted = body.get("spaceID")
        if wanted is not None:
            check_space_id(wanted)
        self.write_json({"spaceID": await self.store.create_space(wanted)})


class SpaceExistsHandler(JSONHandler):
    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body, dict):
            raise bad("spaceExists body must be a JSON object")
        space_id = check_space_id(body.get("spaceID"))
        self.write_json({"spaceExists": await self.store.space_exists(space_id)})


async def require_space(handler: JSONHandler, space_id: str) -> None:
    if not await handler.store.space_exists(space_id):
        raise space_not_found(space_id)
