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
from server.limits import note_forwarding
from server.pokes import PokeHub
from server.protocol import RequestError, bad, check_space_id, parse_json
from server.store import Store

log = logging.getLogger(__name__)

# Answers counted in replicache_refused_total: refusals of a request, not client mistakes.
REFUSALS = {401, 413, 429, "ShuttingDown", "ServerBusy", "ServerFull"}

ALLOW_HEADERS = "Content-Type, Authorization, X-Replicache-RequestID, Accept"


class JSONHandler(tornado.web.RequestHandler):
    def initialize(self, store: Store, hub: PokeHub, config: Settings) -> None:
        self.store = store
        self.hub = hub
        self.config = config

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

    def prepare(self) -> None:
        note_forwarding(self)
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
            count_refusal(error)
        elif database_unavailable(error):
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
        if database_unavailable(value):
            log.warning("%s %s -> 503: %s", self.request.method, self.request.path, value)
        else:
            log_failure(self, typ, value, tb)


def database_unavailable(error: Any) -> bool:
    """The database is away or was (a restart): the client should retry (503), not a bug."""
    if isinstance(error, (ServerSelectionTimeoutError, ConnectionFailure)):
        return True
    return isinstance(error, PyMongoError) and any(
        error.has_error_label(label)
        for label in ("TransientTransactionError", "UnknownTransactionCommitResult")
    )


class NotFoundHandler(JSONHandler):
    def prepare(self) -> None:
        raise RequestError(404, "NotFound", f"no route for {self.request.path}")


def count_refusal(error: RequestError) -> None:
    if error.status in REFUSALS or error.error in REFUSALS:
        metrics.request_refused(error.error)


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
