"""A hostile host and hostile input, against `python -m server` as a whole process
(issue 18): running out of file descriptors, secrets and forged lines in the log, and
the embedded database closed to other local users."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import time
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError
from tornado.httpclient import AsyncHTTPClient

from server.auth import mint
from server.embedded import EmbeddedMongo
from server.testing import LiveServer
from tests import raw
from tests.helpers import Api, mutation

pytestmark = pytest.mark.gen_test(timeout=120)

SECRET = "process-test-secret-" + "q" * 24
ADMIN = "process-admin-token-" + "z" * 24
# `python -m server` under a low open-files limit (hard, so the server cannot raise it).
LOW_FILES = (
    "import resource, runpy, sys; n = int(sys.argv.pop(1));"
    " resource.setrlimit(resource.RLIMIT_NOFILE, (n, n));"
    " runpy.run_module('server', run_name='__main__', alter_sys=True)"
)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_out_of_file_descriptors_backs_off_quietly(mongo_uri):
    """80 idle connections against 48 descriptors: accepting pauses instead of spinning
    (on main: a traceback per try, 174 MB of log in 80 s), says so at most once a
    second, and serves again once the header timeout has freed descriptors."""
    server = LiveServer("--header-timeout", "1", mongodb_uri=mongo_uri)
    server.args[1:3] = ["-c", LOW_FILES, "48"]
    with server:
        port = port_of(server.url)
        started = time.monotonic()
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(80)]
        try:
            r = await raw.request(port, "GET", "/healthz", timeout=20)
            assert r.status == 200
        finally:
            for s in idle:
                s.close()
        seconds = time.monotonic() - started
    output = "".join(server.output)
    warnings = output.count("cannot accept connections")
    assert 1 <= warnings <= seconds + 1, output[-3000:]
    assert output.count("Too many open files") == warnings  # only in those lines
    assert "Traceback" not in output


async def test_no_token_or_secret_reaches_the_log(tmp_path):
    db = EmbeddedMongo(None)
    uri = db.start()
    env = {"AUTH_SECRET": SECRET, "ADMIN_TOKEN": ADMIN}
    token = mint(SECRET, "*", "user-1")
    try:
        with LiveServer("--log-level", "debug", mongodb_uri=uri, env=env) as server:
            port = port_of(server.url)
            r = await raw.request(port, "GET", f"/api/replicache/poke?spaceID=%ff&auth={token}")
            assert r.status == 400  # bad unicode: Tornado's own warning named the URI
            r = await raw.request(port, "GET", f"/static/dist/%00?auth={token}")
            assert r.status == 404
            r = await raw.request(port, "GET", "/nowhere?auth=" + token)
            assert r.status == 404
            # A header Tornado refuses is logged with its value.
            for value in (f"Bearer {token}\x01", f"Bearer {ADMIN}\x01"):
                reader, writer = await raw.connect(port)
                writer.write(raw.head("GET", "/admin/api/spaces", {"Authorization": value}))
                assert await raw.closed_by_server(reader, 10)
                writer.close()
            await asyncio.to_thread(db.stop)  # then a poke gets 503 DatabaseUnavailable
            r = await raw.request(port, "GET", f"/api/replicache/poke?spaceID=s1&auth={token}", timeout=30)
            assert r.status == 503
    finally:
        db.stop()
    output = "".join(server.output)
    assert "GET /api/replicache/poke -> 503" in output  # the line is there, with the path only
    for secret in (token, token.split(".")[2], SECRET, ADMIN):
        assert secret not in output, secret
    assert not re.search(r"auth=v1\.", output)


async def test_client_values_cannot_forge_log_lines(mongo_uri):
    forged = "2031-01-01 00:00:00,000 WARNING server: FORGED"
    with LiveServer(mongodb_uri=mongo_uri) as server:
        api = Api(AsyncHTTPClient(), server.url)
        space = await api.create_space()
        bad = [mutation(1, f"c\n{forged}", name="noSuchMutator"), mutation(2, "c2", name=f"x\r\n{forged}")]
        for m in bad:
            assert (await api.push(space, f"g\n{forged}", [m])).status in (200, 400)
        r = await raw.request(
            port_of(server.url), "GET", "/api/replicache/pull%0a" + forged.replace(" ", "%20")
        )
        assert r.status == 404
    output = "".join(server.output)
    assert "FORGED" in output  # the values were logged...
    lines = output.splitlines()
    assert not [line for line in lines if line.startswith("2031-") or line.startswith(forged)]  # ...escaped


def database_pid(data_dir: Path) -> int:
    return int((data_dir / "secantusd.pid").read_text())


def database_port(pid: int) -> int:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return int(args[args.index("--port") + 1])


async def refused(uri: str) -> bool:
    """Whether this client is refused every read and write of the server's data (not
    authenticated, or its credentials fail: the driver then reports no usable server)."""
    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=2000)
    try:
        for attempt in (
            lambda: client.replicache.spaces.find_one(),
            lambda: client.replicache.spaces.insert_one({"_id": "intruder"}),
            lambda: client.list_database_names(),
        ):
            try:
                await attempt()
                return False
            except OperationFailure:
                pass
            except ServerSelectionTimeoutError as e:
                if "AuthenticationFailed" not in str(e):
                    raise
        return True
    finally:
        await client.close()


async def test_the_embedded_database_is_closed_to_others(tmp_path):
    # A data dir as an older version left it: world-readable.
    (tmp_path / "db").mkdir(mode=0o755)
    (tmp_path / "old.log").write_text("x")
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "old.log", 0o644)
    env = {"AUTH_SECRET": SECRET, "ADMIN_TOKEN": ADMIN, "COOKIE_SECRET": SECRET + "c"}
    with LiveServer(data_dir=tmp_path, env=env) as server:
        api = Api(AsyncHTTPClient(), server.url)
        auth = {"Authorization": mint(SECRET, "*", "u")}
        r = await api.post("/api/replicache/createSpace", {"spaceID": "kept"}, auth)
        assert r.status == 200  # the server itself gets in
        pid = database_pid(tmp_path)
        port = database_port(pid)
        # Another local client, with no credentials or with made-up ones, gets nothing.
        assert await refused(f"mongodb://127.0.0.1:{port}/?directConnection=true")
        assert await refused(f"mongodb://replicache:guess@127.0.0.1:{port}/?directConnection=true")
        first = json.loads((tmp_path / "secantusd.auth").read_text())["password"]
        # 18.10: the database child has none of the server's secrets in its environment.
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        for name, value in env.items():
            assert f"{name}=" not in environ and value not in environ, name
    output = "".join(server.output)
    # 0700 and 0600: other users can read nothing, the old files included.
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    for path in tmp_path.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    # A restart signs in with the saved password and changes it: the old one is dead.
    with LiveServer(data_dir=tmp_path, env=env) as server:
        api = Api(AsyncHTTPClient(), server.url)
        assert (await api.post("/api/replicache/spaceExists", {"spaceID": "kept"})).body == {
            "spaceExists": True
        }
        port = database_port(database_pid(tmp_path))
        second = json.loads((tmp_path / "secantusd.auth").read_text())["password"]
        assert second != first
        assert await refused(f"mongodb://replicache:{first}@127.0.0.1:{port}/?directConnection=true")
    output += "".join(server.output)
    assert first not in output and second not in output and "mongodb://" not in output
