"""JSONHandler: CORS, JSON bodies, JSON errors; every API handler builds on it."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

import tornado.web
from pymongo.errors import ConnectionFailure, PyMongoError, ServerSelectionTimeoutError

from server import metrics
from server.config import Settings
from server.pokes import PokeHub
from server.protocol import RequestError, bad, check_space_id, parse_json
from server.store import Store

log = logging.getLogger(__name__)

ALLOW_HEADERS = "Content-Type, Authorization, X-Replicache-RequestID, Accept"


class JSONHandler(tornado.web.RequestHandler):
    def initialize(self, store: Store, hub: PokeHub, config: Settings) -> None:
        self.store = store
        self.hub = hub
        self.config = config

    def set_default_headers(self) -> None:
        allowed = self.application.settings["allowed_origins"]
        origin = self.request.headers.get("Origin")
        if allowed is None:
            self.set_header("Access-Control-Allow-Origin", "*")
        elif origin in allowed:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")

    def prepare(self) -> None:
        # Shutting down: refuse new work, so draining the queued pushes comes to an end.
        if self.hub.closing:
            raise RequestError(503, "ShuttingDown", "this server is shutting down; retry")

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

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, RequestError):
            self.set_status(error.status)
            body = error.body()
        elif isinstance(error, (ServerSelectionTimeoutError, ConnectionFailure)):
            self.set_status(503)
            body = {"error": "DatabaseUnavailable", "message": "the database is not reachable; retry later"}
        elif isinstance(error, tornado.web.HTTPError):
            reason = error.reason or HTTPStatus(status_code).phrase
            body = {"error": reason.replace(" ", ""), "message": error.log_message or reason}
        else:
            body = {"error": "InternalError", "message": "internal server error"}
        if isinstance(error, PyMongoError):
            metrics.database_error(error)
        self.error_body = body  # read by the access log
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, RequestError):
            return  # a client's mistake: the access log line has its error and message
        if isinstance(value, (ServerSelectionTimeoutError, ConnectionFailure)):
            log.warning("%s %s -> 503: %s", self.request.method, self.request.uri, value)
        else:
            super().log_exception(typ, value, tb)


class NotFoundHandler(JSONHandler):
    def prepare(self) -> None:
        raise RequestError(404, "NotFound", f"no route for {self.request.path}")
