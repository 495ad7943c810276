"""The Replicache endpoints: push, pull, createSpace, spaceExists."""

from __future__ import annotations

from dataclasses import replace

from tornado.web import stream_request_body

from server import metrics
from server.auth import CreateAuth, SpaceAuth
from server.handlers.base import JSONHandler
from server.limits import LimitedBody, SmallBody, check_push_rate
from server.protocol import (
    check_space_id,
    json_object,
    parse_pull,
    parse_push,
    push_body,
    request_version,
    version_not_supported,
)


class MeasuredHandler(JSONHandler):
    """Push and pull: every answer counted and timed (replicache_requests_total,
    replicache_request_seconds) by endpoint and outcome, once it is sent."""

    endpoint: str

    def on_finish(self) -> None:
        metrics.request_done(self.endpoint, self.get_status(), self.request.request_time())
        super().on_finish()


@stream_request_body
class PushHandler(SpaceAuth, LimitedBody, MeasuredHandler):
    endpoint = "push"

    async def post(self) -> None:
        space_id = self.space_id()
        body = push_body(self.json_body(strict=False))
        if request_version(body, "pushVersion") != 1:
            self.write_json(version_not_supported("push"))
            return
        request = replace(parse_push(body), user_id=self.user_id)
        check_push_rate(self, self.user_id, request.client_group_id)
        self.write_json(await self.store.push(space_id, request))


@stream_request_body
class PullHandler(SpaceAuth, LimitedBody, MeasuredHandler):
    endpoint = "pull"

    async def post(self) -> None:
        space_id = self.space_id()
        body = json_object(self.json_body(), "pull")
        if request_version(body, "pullVersion") != 1:
            self.write_json(version_not_supported("pull"))
            return
        self.write_json(await self.store.pull(space_id, replace(parse_pull(body), user_id=self.user_id)))


@stream_request_body
class CreateSpaceHandler(CreateAuth, SmallBody, JSONHandler):
    async def post(self) -> None:
        body = json_object(self.json_body(), "createSpace")
        wanted = body.get("spaceID")
        if wanted is not None:
            check_space_id(wanted)
        await self.allow_space(wanted)
        self.write_json({"spaceID": await self.store.create_space(wanted)})


@stream_request_body
class SpaceExistsHandler(SmallBody, JSONHandler):
    async def post(self) -> None:
        body = json_object(self.json_body(), "spaceExists")
        space_id = check_space_id(body.get("spaceID"))
        self.write_json({"spaceExists": await self.store.space_exists(space_id)})
