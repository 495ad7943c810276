"""A hostile network (issue 18) and refusals a client can read (issue 11), through real
sockets: slowloris, idle and half-sent requests, per-address caps, forwarding headers,
oversized bodies. The server under test is server.connections.Server, as `python -m
server` runs it; other loopback addresses (127.0.0.2, ...) are other clients."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator

import pytest
import tornado.testing
from prometheus_client import REGISTRY

from server import connections, testing
from server.app import make_app
from server.auth import mint
from server.testing import SSE, listen
from tests import raw
from tests.helpers import mutation, uid

pytestmark = pytest.mark.gen_test(timeout=60)

SECRET = "hostile-test-secret-" + "s" * 20
JSON = {"Content-Type": "application/json"}
ADMIN = "hostile-admin-token-" + "a" * 20


@pytest.fixture
def port(io_loop, settings, store, hub, lifecycle) -> Iterator[int]:
    """The app behind connections.Server on 127.0.0.1."""
    sock, port = tornado.testing.bind_unused_port()
    server = connections.Server(make_app(settings, store, hub, lifecycle), settings)
    server.add_sockets([sock])
    yield port
    server.stop()
    io_loop.run_sync(server.close_all_connections)


def push_body(group: str, client: str, n: int = 1) -> dict:
    """One increment, mutation id n."""
    return testing.push_body(group, [mutation(n, client)])


async def create_space(port: int, headers: dict[str, str] | None = None) -> str:
    r = await raw.request(port, "POST", "/api/replicache/createSpace", {}, headers)
    assert r.status == 200, r.body
    return r.json()["spaceID"]


# ---- 18.1 slowloris, idle connections, running out of file descriptors


@pytest.mark.parametrize("settings", [{"header_timeout": 0.5}], indirect=True)
async def test_slowloris_connections_are_closed_after_the_header_timeout(port):
    """30 connections each sending a request head one byte at a time: each is closed at
    the header timeout however it trickles, and a normal request is served meanwhile."""
    head = raw.head("GET", "/healthz")
    conns = [await raw.connect(port) for _ in range(30)]

    async def trickle(writer: asyncio.StreamWriter) -> None:
        for byte in head[:-4]:  # never the blank line that ends the head
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    trickling = [asyncio.ensure_future(trickle(w)) for _, w in conns]
    assert (await raw.request(port, "GET", "/healthz")).status == 200
    closed = await asyncio.gather(*(raw.closed_by_server(r, timeout=5) for r, _ in conns))
    assert all(closed)
    for task in trickling:
        task.cancel()
    for _, w in conns:
        w.close()


@pytest.mark.parametrize("settings", [{"idle_timeout": 0.5, "heartbeat_seconds": 0.1}], indirect=True)
async def test_idle_keep_alive_is_closed_but_a_poke_stream_lives_on(port):
    space = await create_space(port)
    reader, writer = await raw.connect(port)
    writer.write(raw.head("GET", "/healthz"))
    assert (await raw.read_response(reader)).status == 200
    sse = await listen(f"http://127.0.0.1:{port}", space)
    assert await raw.closed_by_server(reader, timeout=5)  # idle after its request
    beats = 0
    while beats < 20:  # 2 s of a stream: four idle timeouts
        assert await sse.data() == "beat"
        beats += 1
    sse.close()
    writer.close()


@pytest.mark.parametrize(
    "settings", [{"max_connections_per_address": 20, "trusted_proxies": "127.0.0.9"}], indirect=True
)
async def test_connections_per_address_are_capped(port):
    held = [await raw.connect(port, "127.0.0.2") for _ in range(20)]
    reader, writer = await raw.connect(port, "127.0.0.2")
    r = await raw.read_response(reader)  # refused at once, before any request
    assert r.status == 429 and r.json()["error"] == "TooManyConnections"
    assert await raw.closed_by_server(reader, 5)
    writer.close()
    assert (await raw.request(port, "GET", "/healthz", source="127.0.0.3")).status == 200  # others are not
    proxy = [await raw.connect(port, "127.0.0.9") for _ in range(25)]  # a trusted proxy is exempt
    reader, writer = proxy[-1]
    writer.write(raw.head("GET", "/healthz"))
    assert (await raw.read_response(reader)).status == 200
    held.pop()[1].close()  # one slot back for 127.0.0.2
    for _ in range(50):  # the server notices the close on its next loop turn
        r = await raw.request(port, "GET", "/healthz", source="127.0.0.2")
        if r.status == 200:
            break
    assert r.status == 200
    for _, w in held + proxy:
        w.close()


# ---- 18.2 half-sent bodies, 11.7 an oversized body gets a readable 413


@pytest.mark.parametrize("settings", [{"body_timeout": 0.5}], indirect=True)
async def test_a_half_sent_body_is_dropped_at_the_body_timeout(port):
    space = await create_space(port)
    conns = []
    for _ in range(10):
        reader, writer = await raw.connect(port)
        writer.write(raw.head("POST", f"/api/replicache/push?spaceID={space}", JSON, 100_000))
        writer.write(b'{"profileID": "p", ')  # and nothing more
        conns.append((reader, writer))
    assert all(await asyncio.gather(*(raw.closed_by_server(r, timeout=5) for r, _ in conns)))


@pytest.mark.parametrize("settings", [{"body_buffer_bytes": 1_000_000}], indirect=True)
async def test_bodies_held_at_once_are_bounded(port):
    """One 600 kB body on its way: a second is refused with 503 ServerBusy (readable, its
    bytes dropped), and once the first is answered, more go through."""
    space = await create_space(port)
    path = f"/api/replicache/push?spaceID={space}"
    body = json.dumps({**push_body("g", "c"), "pad": "x" * 600_000}).encode()
    first_reader, first = await raw.connect(port)
    first.write(raw.head("POST", path, {**JSON, "Expect": "100-continue"}, len(body)))
    # "100 Continue" comes once prepare() has run: the body's bytes are held from then on.
    assert (await first_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
    r = await raw.request(port, "POST", path, body)
    assert r.status == 503 and r.json()["error"] == "ServerBusy", r.body
    first.write(body)
    assert (await raw.read_response(first_reader)).status == 200
    first.close()
    assert (
        await raw.request(port, "POST", path, {**push_body("g2", "c2"), "pad": "y" * 600_000})
    ).status == 200


def blocking_post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    """Like most HTTP clients: send the whole body, then read the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


async def test_a_12_MB_push_reads_its_413_not_a_reset(port):
    space = await create_space(port)
    body = json.dumps({**push_body("g", "c"), "pad": "x" * 12_000_000}).encode()
    headers = {"Content-Type": "application/json"}
    status, answer = await asyncio.to_thread(
        blocking_post, port, f"/api/replicache/push?spaceID={space}", body, headers
    )
    assert status == 413 and answer["error"] == "BodyTooLarge"
    # The connection was read to its end: the next request on a fresh one is served.
    assert (await raw.request(port, "GET", "/healthz")).status == 200


async def test_an_answer_from_prepare_is_readable_before_a_big_body(port, lifecycle):
    """Any early answer lingers, not only the 413: here 503 ShuttingDown (and, once auth
    is checked in prepare, 401) to a 12 MB push."""
    space = await create_space(port)
    lifecycle.close()
    body = json.dumps({**push_body("g", "c"), "pad": "x" * 12_000_000}).encode()
    headers = {"Content-Type": "application/json"}
    status, answer = await asyncio.to_thread(
        blocking_post, port, f"/api/replicache/push?spaceID={space}", body, headers
    )
    assert status == 503 and answer["error"] == "ShuttingDown"


# ---- 18.3 small bodies for the open endpoints


async def test_space_exists_and_create_space_take_small_bodies(port):
    for path in ("/api/replicache/spaceExists", "/api/replicache/createSpace"):
        r = await raw.request(port, "POST", path, {"spaceID": "s", "pad": "x" * 5000})
        assert r.status == 413 and r.json()["error"] == "BodyTooLarge", path
        big = json.dumps({"spaceID": "s", "pad": "\\u0041" * 900_000}).encode()  # 5.4 MB of escapes
        r = await raw.request(port, "POST", path, big)
        assert r.status == 413, path
    r = await raw.request(port, "POST", "/api/replicache/spaceExists", {"spaceID": "s"})
    assert r.status == 200 and r.json() == {"spaceExists": False}


# ---- 18.4 forwarding headers only from trusted proxies; admin lockout


def admin_get(port: int, token: str, source: str, forwarded: str | None = None):
    headers = {"Authorization": f"Bearer {token}"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
        headers["X-Real-Ip"] = forwarded.split(",")[-1].strip()
    return raw.request(port, "GET", "/admin/api/spaces", headers=headers, source=source)


@pytest.mark.parametrize("settings", [{"admin_token": ADMIN}], indirect=True)
async def test_spoofed_forwarding_headers_are_ignored(port, caplog):
    # Rotating the headers does not escape the lockout of the real address...
    for i in range(20):
        assert (await admin_get(port, f"guess{i}", "127.0.0.2", f"10.0.0.{i}")).status == 401
    assert (await admin_get(port, ADMIN, "127.0.0.2", "10.9.9.9")).status == 429
    # ...and naming another client's address does not lock that client out.
    for i in range(20):
        assert (await admin_get(port, f"guess{i}", "127.0.0.3", "127.0.0.4")).status == 401
    assert (await admin_get(port, ADMIN, "127.0.0.4")).status == 200
    assert caplog.text.count("not in TRUSTED_PROXIES") == 1  # said once, for the operator


@pytest.mark.parametrize(
    "settings", [{"admin_token": ADMIN, "trusted_proxies": "127.0.0.5, 10.1.0.0/16"}], indirect=True
)
async def test_a_trusted_proxy_names_the_client(port):
    for i in range(20):  # a client behind the proxy guessing
        assert (await admin_get(port, f"guess{i}", "127.0.0.5", "203.0.113.7")).status == 401
    assert (await admin_get(port, ADMIN, "127.0.0.5", "203.0.113.7")).status == 429
    # Prepending a forged address fools no one: read from the right, past trusted hops.
    assert (await admin_get(port, ADMIN, "127.0.0.5", "198.51.100.1, 203.0.113.7, 10.1.2.3")).status == 429
    assert (await admin_get(port, ADMIN, "127.0.0.5", "203.0.113.8")).status == 200  # another client
    assert (await admin_get(port, ADMIN, "127.0.0.6", "203.0.113.8")).status == 200  # not a proxy: its own


@pytest.mark.parametrize("settings", [{"admin_token": ADMIN}], indirect=True)
async def test_guessing_from_many_addresses_hits_a_global_limit(port):
    for a in range(10, 15):  # 5 addresses x 20 wrong tokens: each just at its own limit
        for i in range(20):
            assert (await admin_get(port, f"guess{a}-{i}", f"127.0.0.{a}")).status == 401
    r = await admin_get(port, "one-more-guess", "127.0.0.15")
    assert r.status == 429 and r.json()["error"] == "TooManyAttempts"


# ---- 18.12 CORS: none on the ops endpoints, always Vary: Origin


@pytest.mark.parametrize("settings", [{"cors_origins": "https://app.example"}], indirect=True)
async def test_cors_headers(port):
    for path in ("/healthz", "/readyz", "/metrics"):
        r = await raw.request(port, "GET", path, headers={"Origin": "https://app.example"})
        assert r.status == 200 and "access-control-allow-origin" not in r.headers, path
    body = {"spaceID": "s"}
    r = await raw.request(
        port, "POST", "/api/replicache/spaceExists", body, {"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in r.headers and r.headers["vary"] == "Origin"
    r = await raw.request(
        port, "POST", "/api/replicache/spaceExists", body, {"Origin": "https://app.example"}
    )
    assert r.headers["access-control-allow-origin"] == "https://app.example" and r.headers["vary"] == "Origin"


# ---- 18.13 a NUL in a static path


@pytest.mark.parametrize("settings", [{"admin_token": ADMIN}], indirect=True)
async def test_nul_in_a_static_path_is_a_404(port, caplog):
    for path in ("/static/dist/%00", "/static/dist/a%00b.js", "/admin/static/%00", "/admin/static/%00/x"):
        admin = {"Authorization": f"Bearer {ADMIN}"} if path.startswith("/admin") else {}
        r = await raw.request(port, "GET", path, headers=admin)
        assert r.status == 404, path
    assert "Traceback" not in caplog.text and "ERROR" not in caplog.text


# ---- 18.14 poke listeners per address


@pytest.mark.parametrize("settings", [{"poke_max_per_address": 3}], indirect=True)
async def test_poke_listeners_per_address_are_capped(port):
    url = f"http://127.0.0.1:{port}"
    space = await create_space(port)
    mine = [await listen(url, space) for _ in range(3)]
    refused = await SSE.open(url, space)
    assert refused.status == 429 and (await refused.json())["error"] == "TooManyListeners"
    refused.close()
    other = await listen(url, space, source="127.0.0.2")  # another address is not held up
    mine.pop().close()
    for _ in range(50):  # the server sees the hang-up on its next loop turn
        again = await SSE.open(url, space)
        if again.status == 200:
            break
        again.close()
    assert again.status == 200
    for sse in [*mine, other, again]:
        sse.close()


# ---- 18.7 and 11.11 the push rate limit


RATE = {"push_rate": 0.001, "push_burst": 2, "push_user_groups": 2}


@pytest.mark.parametrize("settings", [RATE], indirect=True)
async def test_fresh_group_ids_do_not_escape_the_push_rate(port):
    space = await create_space(port)
    path = f"/api/replicache/push?spaceID={space}"
    statuses = [
        (await raw.request(port, "POST", path, push_body(uid("g-"), uid("c-")))).status for _ in range(6)
    ]
    assert statuses == [200] * 4 + [429] * 2  # the address's bucket: 2 x PUSH_BURST
    r = await raw.request(port, "POST", path, push_body(uid("g-"), uid("c-")), source="127.0.0.2")
    assert r.status == 200  # another address


@pytest.mark.parametrize("settings", [{**RATE, "auth_secret": SECRET}], indirect=True)
async def test_one_user_on_many_addresses_shares_a_bucket(port):
    token = {"Authorization": mint(SECRET, "*", "user-1")}
    space = await create_space(port, token)
    path = f"/api/replicache/push?spaceID={space}"
    statuses = []
    for i in range(6):
        r = await raw.request(
            port, "POST", path, push_body(uid("g-"), uid("c-")), token, source=f"127.0.1.{i + 1}"
        )
        statuses.append(r.status)
    assert statuses == [200] * 4 + [429] * 2, statuses


@pytest.mark.parametrize("settings", [{**RATE, "push_user_groups": 10, "auth_secret": SECRET}], indirect=True)
async def test_no_one_can_throttle_another_users_group(port):
    victim = {"Authorization": mint(SECRET, "*", "victim")}
    attacker = {"Authorization": mint(SECRET, "*", "attacker")}
    space = await create_space(port, victim)
    path = f"/api/replicache/push?spaceID={space}"
    r = await raw.request(port, "POST", path, push_body("victim-group", "vc", 1), victim, source="127.0.0.2")
    assert r.status == 200
    statuses = []
    for n in range(3):  # the attacker pushes to the victim's group until refused
        r = await raw.request(
            port, "POST", path, push_body("victim-group", "ac", n + 1), attacker, source="127.0.0.3"
        )
        statuses.append(r.status)
    assert statuses[-1] == 429, statuses
    r = await raw.request(port, "POST", path, push_body("victim-group", "vc", 2), victim, source="127.0.0.2")
    assert r.status == 200, r.body


# ---- 11.10 refusals are counted


CAPS = {
    "auth_secret": SECRET,
    "push_rate": 0.001,
    "push_burst": 1,
    "poke_max_per_space": 1,
    "max_body_bytes": 10_000,
}


def refused() -> dict[str, float]:
    """The counters as /metrics shows them (read from the registry: /metrics itself
    answers 503 once shutdown has begun)."""
    reasons = ("unauthorized", "body_too_large", "rate_limited", "too_many_listeners", "shutting_down")
    return {r: REGISTRY.get_sample_value("replicache_refused_total", {"reason": r}) or 0.0 for r in reasons}


async def poke(port: int, space: str, token: str) -> tuple[int, asyncio.StreamWriter]:
    reader, writer = await raw.connect(port)
    writer.write(raw.head("GET", f"/api/replicache/poke?spaceID={space}&auth={token}"))
    return (await raw.read_response(reader)).status, writer


@pytest.mark.parametrize("settings", [CAPS], indirect=True)
async def test_each_refusal_is_counted(port, hub, lifecycle):
    before = refused()
    token = mint(SECRET, "*", "u")
    auth = {"Authorization": token}
    space = await create_space(port, auth)
    path = f"/api/replicache/push?spaceID={space}"
    assert (await raw.request(port, "POST", path, push_body("g", "c"))).status == 401
    assert (
        await raw.request(port, "POST", path, {**push_body("g", "c"), "pad": "x" * 20_000}, auth)
    ).status == 413
    assert (await raw.request(port, "POST", path, push_body("g", "c", 1), auth)).status == 200
    assert (await raw.request(port, "POST", path, push_body("g", "c", 2), auth)).status == 429
    status, first = await poke(port, space, token)
    assert status == 200
    status, second = await poke(port, space, token)
    assert status == 429
    lifecycle.close()  # a graceful stop, as SyncServer.close() does it
    hub.wake_all()
    assert await hub.emptied(timeout=5)
    assert (await raw.request(port, "POST", path, push_body("g", "c", 3), auth)).status == 503
    after = refused()
    assert {reason: after[reason] - before[reason] for reason in after} == dict.fromkeys(after, 1.0)
    first.close()
    second.close()
