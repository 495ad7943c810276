"""One structured access-log line per request (logfmt or JSON), and push/pull metrics.

Wired as the Tornado Application's log_function. Never logs bodies, cookies or
Authorization headers; client-supplied values are cut short and escaped.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import tornado.web

from server import metrics
from server.handlers.replicache import PullHandler, PushHandler

access_log = logging.getLogger("server.access")

_MAX_VALUE = 128  # characters kept of a client-supplied value


def _short(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[:_MAX_VALUE]


def request_fields(handler: tornado.web.RequestHandler) -> dict[str, Any]:
    request = handler.request
    status = handler.get_status()
    body = getattr(handler, "parsed_body", None)
    fields: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "method": request.method,
        "path": _short(request.path),
        "status": status,
        "ms": round(request.request_time() * 1000, 2),
        "space": _short(handler.get_query_argument("spaceID", None)),
        "clientGroup": _short(body.get("clientGroupID")) if isinstance(body, dict) else None,
        "requestID": _short(request.headers.get("X-Replicache-RequestID")),
    }
    if status >= 400:
        error = getattr(handler, "error_body", None) or {}
        fields["error"] = _short(error.get("error")) or str(status)
        fields["message"] = _short(error.get("message"))
    return {k: v for k, v in fields.items() if v is not None}


def format_json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text and all(c.isprintable() and c not in ' "=\\' for c in text):
        return text
    return json.dumps(text)  # quoted, with \" \\ \n escapes


def format_logfmt(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())


def make_log_function(log_format: str) -> Any:
    if log_format not in ("logfmt", "json"):
        raise ValueError(f"log format must be logfmt or json, not {log_format!r}")
    fmt = format_json if log_format == "json" else format_logfmt

    def log_request(handler: tornado.web.RequestHandler) -> None:
        status = handler.get_status()
        if isinstance(handler, (PushHandler, PullHandler)):
            endpoint = "push" if isinstance(handler, PushHandler) else "pull"
            metrics.request_done(endpoint, status, handler.request.request_time())
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        if access_log.isEnabledFor(level):
            access_log.log(level, fmt(request_fields(handler)))

    return log_request


def setup_access_log() -> None:
    """The access line alone on stderr, so log shippers can parse it whole."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.propagate = False
