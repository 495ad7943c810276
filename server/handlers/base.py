"""BaseHandler, which every handler of ours builds on, and JSONHandler for the API.

BaseHandler: the handler's dependencies (store, hub, config, lifecycle), new work refused
during shutdown, errors answered through the one mapping (handlers/errors.py) and logged
without query strings. JSONHandler adds CORS and JSON bodies. The HTML pages have their
own bases (HTMLHandler in handlers/pages.py, AdminPageHandler in server/admin/pages.py),
which change only how an error answer is written.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import tornado.web

from server.config import Settings
from server.handlers.errors import ErrorAnswer, answer_for, count, database_unavailable
from server.lifecycle import Lifecycle
from server.limits import note_forwarding
from server.pokes import PokeHub
from server.protocol import RequestError, bad, check_space_id, parse_json, space_not_found
from server.store import Store

log = logging.getLogger(__name__)

ALLOW_HEADERS = "Content-Type, Authorization, X-Replicache-RequestID, Accept"


class BaseHandler(tornado.web.RequestHandler):
    error_body: dict[str, Any] | None = None  # of an error answer, read by the access log

    def initialize(self, store: Store, hub: PokeHub, config: Settings, lifecycle: Lifecycle) -> None:
        self.store = store
        self.hub = hub
        self.config = config
        self.lifecycle = lifecycle

    def prepare(self) -> None:
        note_forwarding(self)
        self.refuse_when_closing()

    def refuse_when_closing(self) -> None:
        """Shutting down: refuse new work, so draining the queued pushes comes to an end."""
        if self.lifecycle.closing:
            raise RequestError(503, "ShuttingDown", "this server is shutting down; retry")

    async def require_space(self, space_id: str) -> None:
        """404 SpaceNotFound unless the space exists (for handlers that do not go through
        a store call that checks it)."""
        if not await self.store.space_exists(space_id):
            raise space_not_found(space_id)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        answer = answer_for(error, status_code)
        count(error)
        if answer.status != status_code:  # else keep the reason Tornado set (an HTTPError's own)
            self.set_status(answer.status)
        for name, value in answer.headers.items():
            self.set_header(name, value)
        self.error_body = answer.body()
        self.write_answer(answer)

    def write_answer(self, answer: ErrorAnswer) -> None:
        """An error answer as JSON; the page handlers write it as a page."""
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(answer.body()))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, RequestError):
            return  # a client's mistake: the access log line has its error and message
        if database_unavailable(value):
            log.warning("%s %s -> 503: %s", self.request.method, self.request.path, value)
        else:
            log_failure(self, typ, value, tb)


class JSONHandler(BaseHandler):
    def set_default_headers(self) -> None:
        # Vary on every answer, allowed or not: a cache must not hand one origin's
        # answer (with or without Access-Control-Allow-Origin) to another.
        self.set_header("Vary", "Origin")
        allowed = self.application.settings["allowed_origins"]
        if allowed is None:
            self.set_header("Access-Control-Allow-Origin", "*")
        else:
            origin = self.request.headers.get("Origin")
            if origin in allowed:
                self.set_header("Access-Control-Allow-Origin", origin)

    def options(self, *args: Any) -> None:
        self.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", ALLOW_HEADERS)
        self.set_header("Access-Control-Max-Age", "86400")
        self.set_status(204)

    def space_id(self) -> str:
        value = self.get_query_argument("spaceID", None)
        if value is None:
            raise bad("missing spaceID query parameter", "MissingSpaceID")
        return check_space_id(value)

    def json_body(self, strict: bool = True) -> Any:
        body = self.request.body
        if not body.strip():
            return {}
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise bad("Content-Type must be application/json", "UnsupportedContentType")
        self.parsed_body = parse_json(body, strict=strict)  # read by the access log (clientGroupID)
        return self.parsed_body

    def write_json(self, value: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False))


class NotFoundHandler(JSONHandler):
    def prepare(self) -> None:
        raise RequestError(404, "NotFound", f"no route for {self.request.path}")


def log_failure(handler: tornado.web.RequestHandler, typ: Any, value: Any, tb: Any) -> None:
    """Tornado's log_exception with the path, never the URI: its query may hold a token
    (the poke stream's ?auth=). A 4xx HTTPError is the client's (the access log has it)."""
    if isinstance(value, tornado.web.HTTPError) and value.status_code < 500:
        return
    request = handler.request
    log.error("uncaught exception %s %s", request.method, request.path, exc_info=(typ, value, tb))


class StaticHandler(tornado.web.StaticFileHandler):
    """Static files: a NUL in the path is a 404, not a ValueError from the file system
    (a 500 with a traceback); failures are logged with the path only."""

    def parse_url_path(self, url_path: str) -> str:
        if "\x00" in url_path:
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        log_failure(self, typ, value, tb)
