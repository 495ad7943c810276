"""Logging: one structured access-log line per request (logfmt or JSON), and the
formatter every other line goes through.

The access log is the Tornado Application's log_function. It never logs bodies, cookies,
Authorization headers or query strings; client-supplied values are cut short and escaped.
Every other line (ours, Tornado's, PyMongo's) is escaped and scrubbed by SafeFormatter:
control characters become escapes, so a value with a newline cannot forge a line, and
anything shaped like a secret is replaced (tokens, Bearer values, ?auth=, URI passwords,
and the configured secrets themselves).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

import tornado.web

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
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        if access_log.isEnabledFor(level):
            access_log.log(level, fmt(request_fields(handler)))

    return log_request


_SECRETS: set[str] = set()  # configured secrets, never to be logged (add_secret)
_SHAPES = re.compile(
    r"(?P<token>\bv1\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,})"  # server.auth tokens
    r"|(?P<bearer>(?i:bearer)\s+)\S+"
    r"|(?P<query>[?&](?i:auth|token)=)[^&\s'\"]+"
    r"|(?P<uri>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@"  # mongodb://user:password@
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def add_secret(value: str) -> None:
    """A value (a secret setting, a generated password) that must never be logged."""
    if len(value) >= 4:
        _SECRETS.add(value)


def _hide(match: re.Match[str]) -> str:
    if match["token"]:
        return "v1.<redacted>"
    return f"{match['bearer'] or match['query'] or match['uri']}<redacted>" + ("@" if match["uri"] else "")


def scrub(text: str) -> str:
    """One line: secrets replaced, control characters escaped."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "<redacted>")
    text = _SHAPES.sub(_hide, text)
    return _CONTROL.sub(lambda m: json.dumps(m[0])[1:-1], text)


class SafeFormatter(logging.Formatter):
    """Every record's message scrubbed; in a traceback, each exception's message too
    (its code lines come from our files, not from clients)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = scrub(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return "".join(_traceback(traceback.TracebackException(*ei))).rstrip("\n")


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _traceback(te: traceback.TracebackException) -> list[str]:
    lines: list[str] = []
    if te.__cause__ is not None:
        lines += [*_traceback(te.__cause__), _CAUSE]
    elif te.__context__ is not None and not te.__suppress_context__:
        lines += [*_traceback(te.__context__), _CONTEXT]
    if te.stack:
        lines += ["Traceback (most recent call last):\n", *te.stack.format()]
    lines += [scrub(line.rstrip("\n")) + "\n" for line in te.format_exception_only()]
    return lines


def setup_logging(level: str, secrets: list[str]) -> None:
    """Every line through SafeFormatter on stderr; the access line alone on its own line,
    so log shippers can parse it whole."""
    for secret in secrets:
        add_secret(secret)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    access = logging.StreamHandler(sys.stderr)
    access.setFormatter(SafeFormatter("%(message)s"))
    access_log.addHandler(access)
    access_log.propagate = False
