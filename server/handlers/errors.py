"""One mapping from an exception to its answer: status, error code and message.

Every handler answers an error through it (BaseHandler.write_error): the JSON API as
{"error", "message"}, the counter's and the admin's pages as a small HTML page with the
same status and message. The cases:

- RequestError (server/protocol.py): a client's mistake or a refusal, as raised;
- the database away, or a transaction it asks to retry: 503 DatabaseUnavailable, which
  the Replicache client retries (a restart of the embedded database is one);
- Tornado's HTTPError (405, a bad header): its status and reason;
- anything else: 500 InternalError, with nothing of the exception in the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus

import tornado.web
from pymongo.errors import ConnectionFailure, PyMongoError, ServerSelectionTimeoutError

from server import metrics
from server.protocol import RequestError

# Answers counted in replicache_refused_total: refusals of a request, not client mistakes.
REFUSALS = {401, 413, 429, "ShuttingDown", "ServerBusy", "ServerFull"}


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    status: int
    error: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)  # Retry-After, WWW-Authenticate

    def body(self) -> dict[str, str]:
        return {"error": self.error, "message": self.message}


def answer_for(error: BaseException | None, status: int) -> ErrorAnswer:
    """The answer to `error`; `status` is what Tornado chose (500 for an uncaught one)."""
    if isinstance(error, RequestError):
        return ErrorAnswer(error.status, error.error, error.message, error.headers)
    if database_unavailable(error):
        return ErrorAnswer(503, "DatabaseUnavailable", "the database is not reachable; retry later")
    if isinstance(error, tornado.web.HTTPError):
        reason = error.reason or HTTPStatus(status).phrase
        return ErrorAnswer(status, reason.replace(" ", ""), error.log_message or reason)
    return ErrorAnswer(status, "InternalError", "internal server error")


def count(error: BaseException | None) -> None:
    """The metrics an error answer moves: refusals by reason, database errors by type."""
    if isinstance(error, RequestError) and (error.status in REFUSALS or error.error in REFUSALS):
        metrics.request_refused(error.error)
    if isinstance(error, PyMongoError):
        metrics.database_error(error)


def database_unavailable(error: BaseException | None) -> bool:
    """The database is away or was (a restart): the client should retry (503), not a bug."""
    if isinstance(error, (ServerSelectionTimeoutError, ConnectionFailure)):
        return True
    return isinstance(error, PyMongoError) and any(
        error.has_error_label(label)
        for label in ("TransientTransactionError", "UnknownTransactionCommitResult")
    )
