"""Auth: HMAC tokens bound to a space and user, with expiry; groups bound to their user."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tornado.tcpclient import TCPClient

from server import auth
from server.config import Settings
from server.protocol import Mutation, PushRequest, RequestError
from tests.helpers import database_state, mutation
from tests.live import ROOT

pytestmark = pytest.mark.gen_test

SECRET = "test-secret"
AUTH = {"auth_secret": SECRET}


def token(space: str, user: str = "alice", ttl: float = 3600, secret: str = SECRET) -> str:
    return auth.mint(secret, space, user, ttl)


def check_refused(token_text: str, space: str, why: str) -> None:
    with pytest.raises(RequestError) as e:
        auth.verify(SECRET, token_text, space)
    assert e.value.status == 401 and why in e.value.message


async def test_tokens_verify_and_refuse():
    good = token("s1", "bob")
    assert auth.verify(SECRET, good, "s1").user_id == "bob"
    assert auth.verify(SECRET, token("*"), "anything").user_id == "alice"
    check_refused(good, "s2", "another space")
    check_refused(token("s1", ttl=-1), "s1", "expired")
    check_refused(token("s1", secret="other"), "s1", "signature")
    head, payload, sig = good.split(".")
    forged = json.dumps({"sp": "s1", "sub": "mallory", "exp": 2**40}).encode()
    check_refused(f"{head}.{auth._b64(forged)}.{sig}", "s1", "signature")
    check_refused(f"{head}.{payload}.{sig[:-2]}", "s1", "signature")
    check_refused("", "s1", "required")
    check_refused("v1.abc", "s1", "malformed")
    check_refused("v2." + good[3:], "s1", "malformed")
    check_refused(good + "x" * 3000, "s1", "malformed")
    assert auth.token_from(f"Bearer {good}") == good == auth.token_from(f"  {good} ")


async def test_mint_script_makes_a_token_the_server_accepts():
    out = subprocess.run(
        [sys.executable, "scripts/mint_token.py", "--space", "s9", "--user", "u1", "--ttl", "60"],
        cwd=ROOT,
        env={"AUTH_SECRET": SECRET},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert auth.verify(SECRET, out, "s9").user_id == "u1"


async def test_page_token_only_when_auth_is_on():
    assert auth.page_token(Settings(), "s1", "u") == ""
    made = auth.page_token(Settings(auth_secret=SECRET), "s1", "u")
    assert auth.verify(SECRET, made, "s1").user_id == "u"


async def test_auth_off_by_default(api):
    space = await api.create_space()
    assert (await api.push(space, "g1", [mutation(1, "c1")])).status == 200


@pytest.mark.parametrize("settings", [AUTH], indirect=True)
async def test_endpoints_require_a_token(api, store, settings):
    owner = {"Authorization": token("*", "app")}
    r = await api.post("/api/replicache/createSpace", {"spaceID": "s1"})
    assert r.status == 401 and r.body["error"] == "Unauthorized"
    r = await api.post("/api/replicache/createSpace", {}, {"Authorization": token("s1")})
    assert r.status == 401  # a random id needs an any-space token
    r = await api.post("/api/replicache/createSpace", {"spaceID": "s1"}, {"Authorization": token("s1")})
    assert r.status == 200
    r = await api.post("/api/replicache/createSpace", {}, owner)
    assert r.status == 200
    r = await api.post("/api/replicache/spaceExists", {"spaceID": "s1"})
    assert r.body == {"spaceExists": True}  # open: it reveals nothing a token protects

    push = {"profileID": "p", "clientGroupID": "g1", "mutations": [mutation(1, "c1")], "pushVersion": 1}
    pull = {"profileID": "p", "clientGroupID": "g1", "cookie": None, "pullVersion": 1}
    before = await database_state(store)
    for headers in [{}, {"Authorization": ""}, {"Authorization": token("s2")}]:
        r = await api.post("/api/replicache/push?spaceID=s1", push, headers)
        assert r.status == 401 and r.body["message"]
        r = await api.post("/api/replicache/pull?spaceID=s1", pull, headers)
        assert r.status == 401
    r = await api.post(f"/api/replicache/push?spaceID=s1&auth={token('s1')}", push)
    assert r.status == 401  # the query parameter is for the poke stream only
    assert await database_state(store) == before

    r = await api.post("/api/replicache/push?spaceID=s1", push, {"Authorization": "Bearer " + token("s1")})
    assert r.status == 200
    r = await api.post("/api/replicache/pull?spaceID=s1", pull, {"Authorization": token("s1")})
    assert r.body["lastMutationIDChanges"] == {"c1": 1}


@pytest.mark.parametrize("settings", [AUTH], indirect=True)
async def test_group_is_bound_to_its_user(api, store, settings):
    await api.post("/api/replicache/createSpace", {"spaceID": "s1"}, {"Authorization": token("s1")})
    alice, bob = {"Authorization": token("s1", "alice")}, {"Authorization": token("s1", "bob")}
    push = {"profileID": "p", "clientGroupID": "ga", "mutations": [mutation(1, "c1")], "pushVersion": 1}
    assert (await api.post("/api/replicache/push?spaceID=s1", push, alice)).status == 200
    push["mutations"] = [mutation(1, "c1"), mutation(2, "c1", args=100)]
    before = await database_state(store)
    # Bob's client starts over (issue 11.5: a 401 would be resent forever); alice keeps all.
    r = await api.post("/api/replicache/push?spaceID=s1", push, bob)
    assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"})
    pull = {"profileID": "p", "clientGroupID": "ga", "cookie": None, "pullVersion": 1}
    r = await api.post("/api/replicache/pull?spaceID=s1", pull, bob)
    assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"})
    assert await database_state(store) == before
    r = await api.post("/api/replicache/pull?spaceID=s1", pull, alice)
    assert r.body["lastMutationIDChanges"] == {"c1": 1}
    assert r.body["patch"] == [{"op": "put", "key": "count", "value": 1}]
    # bob's client cannot borrow alice's client id through his own group either
    push = {"profileID": "p", "clientGroupID": "gb", "mutations": [mutation(2, "c1")], "pushVersion": 1}
    r = await api.post("/api/replicache/push?spaceID=s1", push, bob)
    assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"})
    assert await database_state(store) == before


@pytest.mark.parametrize("settings", [AUTH], indirect=True)
async def test_group_made_before_auth_starts_over(api, store, settings):
    await api.post("/api/replicache/createSpace", {"spaceID": "s1"}, {"Authorization": token("s1")})
    # A group made while auth was off belongs to no user.
    made = PushRequest("old", "p", (Mutation(1, "increment", 1, "c0", 0.0),), "")
    assert await store.push("s1", made) == {}
    before = await database_state(store)
    push = {"profileID": "p", "clientGroupID": "old", "mutations": [mutation(2, "c0")], "pushVersion": 1}
    r = await api.post("/api/replicache/push?spaceID=s1", push, {"Authorization": token("s1")})
    assert r.status == 200 and r.body == {"error": "ClientStateNotFound"}
    assert await database_state(store) == before


async def sse_status(port: int, path: str, headers: str = "") -> bytes:
    stream = await TCPClient().connect("127.0.0.1", port)
    await stream.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    status = await stream.read_until(b"\r\n")
    stream.close()
    return status.strip()


@pytest.mark.parametrize("settings", [{**AUTH, "heartbeat_seconds": 60}], indirect=True)
async def test_poke_stream_takes_header_or_query_token(api, http_port, settings):
    await api.post("/api/replicache/createSpace", {"spaceID": "s1"}, {"Authorization": token("s1")})
    path = "/api/replicache/poke?spaceID=s1"
    assert await sse_status(http_port, path) == b"HTTP/1.1 401 Unauthorized"
    assert await sse_status(http_port, f"{path}&auth={token('s2')}") == b"HTTP/1.1 401 Unauthorized"
    assert await sse_status(http_port, f"{path}&auth={token('s1')}") == b"HTTP/1.1 200 OK"
    header = f"Authorization: Bearer {token('s1')}\r\n"
    assert await sse_status(http_port, path, header) == b"HTTP/1.1 200 OK"
