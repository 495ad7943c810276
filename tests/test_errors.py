"""One error-to-response mapping (server/handlers/errors.py) for every handler: the JSON
API, the counter's pages and the admin pages give the same status, code, message and
headers for the same exception, and differ only in how they write it."""

from __future__ import annotations

import json

import pytest
import tornado.web
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from server.admin.lockout import FailedAttempts
from server.admin.pages import AdminPageHandler
from server.admin.sessions import AdminSessions
from server.config import Settings
from server.handlers.base import JSONHandler
from server.handlers.errors import ErrorAnswer, answer_for
from server.handlers.pages import Bundle, CounterPageHandler
from server.lifecycle import Lifecycle
from server.pokes import PokeHub
from server.protocol import RequestError

pytestmark = pytest.mark.gen_test

SECRET_DETAIL = "secret-detail-of-a-bug"
ERRORS = {
    "refusal": RequestError(429, "RateLimited", "slow down", headers={"Retry-After": "7"}),
    "database": ServerSelectionTimeoutError("no servers found"),
    "transient": OperationFailure("write conflict", 112, {"errorLabels": ["TransientTransactionError"]}),
    "bug": RuntimeError(SECRET_DETAIL),
    "method": tornado.web.HTTPError(405),
}
EXPECTED = {
    "refusal": ErrorAnswer(429, "RateLimited", "slow down", {"Retry-After": "7"}),
    "database": ErrorAnswer(503, "DatabaseUnavailable", "the database is not reachable; retry later"),
    "transient": ErrorAnswer(503, "DatabaseUnavailable", "the database is not reachable; retry later"),
    "bug": ErrorAnswer(500, "InternalError", "internal server error"),
    "method": ErrorAnswer(405, "MethodNotAllowed", "Method Not Allowed"),
}


def test_the_mapping():
    for name, error in ERRORS.items():
        status = error.status_code if isinstance(error, tornado.web.HTTPError) else 500
        assert answer_for(error, status) == EXPECTED[name], name


class Raises:
    def get(self, name: str) -> None:
        raise ERRORS[name]


class JSONRaises(Raises, JSONHandler):
    pass


class CounterRaises(Raises, CounterPageHandler):
    pass


class AdminRaises(Raises, AdminPageHandler):
    pass


@pytest.fixture
def app(tmp_path):
    deps = {"store": None, "hub": PokeHub(), "config": Settings(), "lifecycle": Lifecycle()}
    admin = {**deps, "attempts": FailedAttempts(), "sessions": AdminSessions(None, 60)}
    return tornado.web.Application(
        [
            (r"/json/(\w+)", JSONRaises, deps),
            (r"/counter/(\w+)", CounterRaises, {**deps, "bundle": Bundle(tmp_path)}),
            (r"/admin/(\w+)", AdminRaises, admin),
        ],
        allowed_origins=None,
    )


@pytest.mark.parametrize("name", list(ERRORS))
async def test_json_and_both_kinds_of_page_answer_alike(http_client, base_url, name):
    expected = EXPECTED[name]
    for kind in ("json", "counter", "admin"):
        r = await http_client.fetch(f"{base_url}/{kind}/{name}", raise_error=False)
        assert r.code == expected.status, (kind, r.body)
        for header, value in expected.headers.items():
            assert r.headers.get(header) == value, (kind, header)
        body = r.body.decode()
        assert SECRET_DETAIL not in body
        if kind == "json":
            assert r.headers["Content-Type"].startswith("application/json")
            assert json.loads(body) == expected.body()
        else:
            assert r.headers["Content-Type"].startswith("text/html"), (kind, body)
            assert expected.message in body, (kind, body)
