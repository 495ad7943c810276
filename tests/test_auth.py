"""Auth: this server's v1 tokens (--auth-secret) bound to a space and user, with expiry;
groups bound to their user; credentials checked before the body is read."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from tornado.tcpclient import TCPClient

from server import auth
from server.auth import tokens
from server.protocol import Mutation, PushRequest, RequestError
from server.testing import ROOT, LiveServer
from tests.helpers import database_state, mutation
from tests.jwtkit import claims, sign
from tests.test_ops import delta, scrape

pytestmark = pytest.mark.gen_test

SECRET = "test-secret"
AUTH = {"auth_secret": SECRET}


def token(space: str, user: str = "alice", ttl: float = 3600, secret: str = SECRET) -> str:
    return auth.mint(secret, space, user, ttl)


def check_refused(token_text: str, why: str) -> None:
    with pytest.raises(RequestError) as e:
        auth.verify(SECRET, token_text)
    assert e.value.status == 401 and why in e.value.message


async def test_tokens_verify_and_refuse():
    good = token("s1", "bob")
    assert auth.verify(SECRET, good) == auth.Claims("s1", "bob", auth.verify(SECRET, good).expires)
    assert auth.verify(SECRET, token("*")).space_id == "*"
    check_refused(token("s1", ttl=-1), "expired")
    check_refused(token("s1", secret="other"), "signature")
    head, payload, sig = good.split(".")
    forged = json.dumps({"sp": "s1", "sub": "mallory", "exp": 2**40}).encode()
    check_refused(f"{head}.{tokens._b64(forged)}.{sig}", "signature")
    check_refused(f"{head}.{payload}.{sig[:-2]}", "signature")
    check_refused("", "required")
    check_refused("v1.abc", "malformed")
    check_refused("v2." + good[3:], "malformed")
    check_refused(good + "x" * 3000, "malformed")
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
    claims = auth.verify(SECRET, out)
    assert (claims.space_id, claims.user_id) == ("s9", "u1")


async def test_auth_off_by_default(api):
    space = await api.create_space()
    assert (await api.push(space, "g1", [mutation(1, "c1")])).status == 200


@pytest.mark.parametrize("settings", [AUTH], indirect=True)
async def test_endpoints_require_a_token(api, store, settings):
    owner = {"Authorization": token("*", "app")}
    r = await api.post("/api/replicache/createSpace", {"spaceID": "s1"})
    assert r.status == 401 and r.body["error"] == "Unauthorized"
    r = await api.post("/api/replicache/createSpace", {}, {"Authorization": token("s1")})
    assert r.status == 403  # a random id needs an any-space token
    r = await api.post("/api/replicache/createSpace", {"spaceID": "s2"}, {"Authorization": token("s1")})
    assert r.status == 403 and r.body["error"] == "Forbidden"
    r = await api.post("/api/replicache/createSpace", {"spaceID": "s1"}, {"Authorization": token("s1")})
    assert r.status == 200
    r = await api.post("/api/replicache/createSpace", {}, owner)
    assert r.status == 200
    r = await api.post("/api/replicache/spaceExists", {"spaceID": "s1"})
    assert r.body == {"spaceExists": True}  # open: it reveals nothing a token protects

    push = {"profileID": "p", "clientGroupID": "g1", "mutations": [mutation(1, "c1")], "pushVersion": 1}
    pull = {"profileID": "p", "clientGroupID": "g1", "cookie": None, "pullVersion": 1}
    before = await database_state(store)
    for headers, status in [({}, 401), ({"Authorization": ""}, 401), ({"Authorization": token("s2")}, 403)]:
        r = await api.post("/api/replicache/push?spaceID=s1", push, headers)
        assert r.status == status and r.body["message"]
        r = await api.post("/api/replicache/pull?spaceID=s1", pull, headers)
        assert r.status == status
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
    assert await sse_status(http_port, f"{path}&auth={token('s2')}") == b"HTTP/1.1 403 Forbidden"
    assert await sse_status(http_port, f"{path}&auth={token('s1', ttl=-1)}") == b"HTTP/1.1 401 Unauthorized"
    assert await sse_status(http_port, f"{path}&auth={token('s1')}") == b"HTTP/1.1 200 OK"
    header = f"Authorization: Bearer {token('s1')}\r\n"
    assert await sse_status(http_port, path, header) == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize("settings", [AUTH], indirect=True)
async def test_credentials_are_checked_before_the_body_is_read(http_server, http_port, settings, store):
    """A stranger's push or createSpace is refused while its body is still on the way:
    nothing of it is read, buffered or parsed (issue 18.2, 18.3)."""
    await store.create_space("s1")
    before = await database_state(store)
    cases = [
        ("/api/replicache/push?spaceID=s1", {}, 401),
        ("/api/replicache/pull?spaceID=s1", {"Authorization": token("s2")}, 403),
        ("/api/replicache/createSpace", {}, 401),
        ("/api/replicache/createSpace", {"Authorization": token("s1", secret="forged")}, 401),
    ]
    for path, headers, status in cases:
        reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 1000000\r\n{head}\r\n".encode()
        )
        writer.write(b'{"spaceID": "s1", "padding": "' + b"x" * 1000)  # 1 KB of the promised 1 MB
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line.startswith(f"HTTP/1.1 {status} ".encode()), (path, line)
        writer.close()
    assert await database_state(store) == before


async def raw_get(port: int, path: str, source: str) -> int:
    """A GET from a given loopback address (127.0.0.0/8 all reaches the server)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    status = int((await asyncio.wait_for(reader.readline(), 10)).split()[1])
    writer.close()
    return status


DEMO = {**AUTH, "public_demo": True, "demo_rate": 0.001, "demo_burst": 3}


@pytest.mark.parametrize("settings", [DEMO], indirect=True)
async def test_public_demo_is_rate_limited_per_address_and_counted(
    http_client, base_url, http_port, settings, store, client_dist
):
    await store.create_space("s1")
    before = await scrape(http_client, base_url)
    one, two = "127.0.0.2", "127.0.0.3"
    assert [await raw_get(http_port, "/", one) for _ in range(3)] == [303, 303, 303]
    assert await raw_get(http_port, "/", one) == 429
    assert await raw_get(http_port, "/space/s1/auth", one) == 429
    assert await raw_get(http_port, "/space/s1", one) == 429  # its meta token too
    # Another address is not slowed down by the first one.
    assert await raw_get(http_port, "/space/s1/auth", two) == 200
    assert await raw_get(http_port, "/space/s1", two) == 200
    assert await raw_get(http_port, "/space/nowhere/auth", two) == 404  # no token for no space
    after = await scrape(http_client, base_url)
    assert delta(after, before, "replicache_public_demo_total", what="space") == 3
    assert delta(after, before, "replicache_public_demo_total", what="token") == 2
    assert delta(after, before, "replicache_refused_total", reason="public_demo_rate") == 3
    assert (await store.admin.list_spaces("", None, 10))["total"] == 4


def test_no_secret_or_token_reaches_the_logs_or_metrics(tmp_path, client_dist):
    jwt_secret, admin = "jwt-secret-" + "j" * 40, "admin-token-" + "a" * 30
    env = {"JWT_SECRET": jwt_secret, "ADMIN_TOKEN": admin, "COOKIE_SECRET": "cookie-secret-" + "c" * 30}
    used = [
        sign(jwt_secret, claims("u1", ["s1"]), "HS256"),
        sign(jwt_secret, claims("u1", ["s2"]), "HS256"),  # 403
        sign(jwt_secret, claims("u1", ["s1"], ttl=-600), "HS256"),  # expired
        sign("not-the-secret-" + "x" * 32, claims("u1", ["s1"]), "HS256"),  # bad signature
    ]

    def request(path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> int:
        r = urllib.request.Request(
            server.url + path, body, {"Content-Type": "application/json", **(headers or {})}
        )
        try:
            with urllib.request.urlopen(r, timeout=10) as response:
                if response.headers.get("Content-Type", "").startswith("text/event-stream"):
                    return response.status  # the stream stays open: hang up
                response.read()
                return response.status
        except urllib.error.HTTPError as e:
            return e.code

    with LiveServer(data_dir=tmp_path, env={**env, "LOG_LEVEL": "debug"}) as server:
        assert request("/api/replicache/createSpace", b'{"spaceID": "s1"}', {"Authorization": used[0]}) == 200
        push = json.dumps(
            {"profileID": "p", "clientGroupID": "g", "mutations": [], "pushVersion": 1}
        ).encode()
        statuses = [request("/api/replicache/push?spaceID=s1", push, {"Authorization": t}) for t in used]
        assert statuses == [200, 403, 401, 401]
        assert [request(f"/api/replicache/poke?spaceID=s1&auth={t}") for t in used] == [200, 403, 401, 401]
        assert request("/admin/api/spaces", headers={"Authorization": "Bearer " + admin[:-1]}) == 401
        assert request("/admin/api/spaces", headers={"Authorization": "Bearer " + admin}) == 200
        metrics = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    logs = "".join(server.output)
    assert "path=/api/replicache/poke" in logs and "status=403" in logs  # the requests were logged
    for secret in [*env.values(), *used, admin[:-1]]:
        assert secret not in logs and secret not in metrics
        for part in secret.split(".")[1:]:  # nor a token's payload or signature alone
            assert part not in logs
