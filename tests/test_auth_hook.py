"""--auth-hook (issue 15.3): the app's own async check decides, and the server answers
401 or 403 as it says; a hook that fails gives 503 with a JSON error and a logged
traceback, never a 500."""

from __future__ import annotations

import logging

import pytest

from server.config import Settings
from tests import auth_hooks
from tests.helpers import Api, Reply, group_users, mutation, uid
from tests.test_auth import sse_status

pytestmark = pytest.mark.gen_test

HOOK = {"auth_hook": "tests.auth_hooks:api_key", "auth_hook_timeout": 0.5}


async def push(api: Api, key: str | None, space: str = "s1") -> Reply:
    body = {
        "profileID": "p",
        "clientGroupID": uid("g-"),
        "mutations": [mutation(1, uid("c-"))],
        "pushVersion": 1,
    }
    return await api.post(
        f"/api/replicache/push?spaceID={space}", body, {} if key is None else {"X-Api-Key": key}
    )


@pytest.mark.parametrize("settings", [HOOK], indirect=True)
async def test_the_hook_decides(settings, api, store):
    await store.create_space("s1")
    r = await push(api, "ann@s1")
    assert r.status == 200
    assert list((await group_users(store, "s1")).values()) == ["ann"]
    assert (await push(api, "bob@*")).status == 200

    r = await push(api, None)
    assert r.status == 401 and r.body == {"error": "Unauthorized", "message": "not signed in"}
    r = await push(api, "@s1")
    assert r.status == 401 and r.body["message"] == "unknown API key"
    r = await push(api, "ann@s2")
    assert r.status == 403 and r.body == {"error": "Forbidden", "message": "ann may not use s1"}
    assert sorted((await group_users(store, "s1")).values()) == ["ann", "bob"]


@pytest.mark.parametrize("settings", [HOOK], indirect=True)
async def test_a_failing_hook_is_a_503_with_its_traceback_logged(settings, api, store, caplog):
    await store.create_space("s1")
    with caplog.at_level(logging.ERROR, logger="server.auth.hook"):
        for key, words in [("crash", "failed"), ("hang", "did not answer"), ("not-a-user", "failed")]:
            r = await push(api, key)
            assert r.status == 503, key
            assert r.body["error"] == "AuthUnavailable" and words in r.body["message"]
            assert "Traceback" not in str(r.body) and "database" not in str(r.body)
    crash = [rec for rec in caplog.records if rec.exc_info]
    assert len(crash) == 1 and "the user database is down" in str(crash[0].exc_info[1])
    assert any("no answer within 0.5s" in rec.getMessage() for rec in caplog.records)
    assert any("returned a int, not a user id" in rec.getMessage() for rec in caplog.records)
    assert await group_users(store, "s1") == {}


@pytest.mark.parametrize("settings", [HOOK], indirect=True)
async def test_create_space_asks_before_the_body_then_about_the_id(settings, api):
    auth_hooks.calls.clear()
    create = "/api/replicache/createSpace"
    r = await api.post(create, {"spaceID": "mine"}, {"X-Api-Key": "ann@mine"})
    assert r.status == 200
    assert [space for space, _ in auth_hooks.calls] == [None, "mine"]
    r = await api.post(create, {"spaceID": "theirs"}, {"X-Api-Key": "ann@mine"})
    assert r.status == 403
    r = await api.post(create, {}, {"X-Api-Key": "ann@mine"})
    assert r.status == 200  # the hook said yes to None: a random id
    r = await api.post(create, {"spaceID": "x"})
    assert r.status == 401


@pytest.mark.parametrize("settings", [HOOK], indirect=True)
async def test_the_poke_stream_passes_its_query_token_as_authorization(settings, api, http_port, store):
    await store.create_space("s1")
    auth_hooks.calls.clear()
    path = "/api/replicache/poke?spaceID=s1"
    assert await sse_status(http_port, path) == b"HTTP/1.1 401 Unauthorized"
    assert await sse_status(http_port, f"{path}&auth=ann@s2") == b"HTTP/1.1 403 Forbidden"
    assert await sse_status(http_port, f"{path}&auth=ann@s1") == b"HTTP/1.1 200 OK"
    assert auth_hooks.calls == [("s1", None), ("s1", "ann@s2"), ("s1", "ann@s1")]


def test_a_hook_must_be_an_async_function():
    for spec in (
        "tests.auth_hooks:not_async",
        "tests.auth_hooks:nothing",
        "tests.no_such_module:x",
        "nocolon",
    ):
        with pytest.raises(SystemExit):
            Settings.from_args(["--auth-hook", spec], env={})
    assert Settings.from_args([], env={"AUTH_HOOK": "tests.auth_hooks:api_key"}).auth_hook
