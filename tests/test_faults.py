"""Faults: the database going away and coming back, kill -9 mid-burst, retried pushes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tornado.httpserver
import tornado.testing
from pymongo import AsyncMongoClient
from tornado.httpclient import AsyncHTTPClient

from server.app import make_app
from server.config import Settings
from server.embedded import EmbeddedMongo, _is_secantus
from server.pokes import PokeHub
from server.store import Store
from server.testing import LiveServer, pull_body, push_body
from tests.helpers import Api, mutation

# ---- the database stops and starts again under a running app


@pytest.mark.gen_test(timeout=240)
async def test_database_outage_is_503_and_heals_without_restart(tmp_path):
    db = EmbeddedMongo(str(tmp_path))
    uri = db.start()
    db_port = db.port
    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=2000)
    hub = PokeHub()
    store = Store(client, "outage", on_commit=hub.poke)
    await store.init()
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(make_app(Settings(heartbeat_seconds=0.2), store, hub))
    server.add_sockets([sock])
    http = AsyncHTTPClient(force_instance=True)
    api = Api(http, f"http://127.0.0.1:{port}")
    frames: asyncio.Queue[bytes] = asyncio.Queue()
    try:
        space = await api.create_space()
        assert (await api.push(space, "g1", [mutation(1, "c1")])).status == 200
        stream = http.fetch(
            f"{api.base_url}/api/replicache/poke?spaceID={space}",
            streaming_callback=frames.put_nowait,
            request_timeout=600,
        )
        assert b"hello" in await asyncio.wait_for(frames.get(), 30)

        db.stop()
        started = time.monotonic()
        # Without a bound, with_transaction retries for 120 s; the client gives up at 60 s.
        r = await api.push(space, "g1", [mutation(2, "c1", args=10)])
        assert r.status == 503 and r.body["error"] == "DatabaseUnavailable", r.body
        r = await api.pull(space, "g1")
        assert r.status == 503 and r.body["error"] == "DatabaseUnavailable"
        r = await api.post("/api/replicache/createSpace", {})
        assert r.status == 503 and r.body["message"]
        print(f"three requests answered 503 in {time.monotonic() - started:.1f}s")
        while not frames.empty():
            frames.get_nowait()
        assert await asyncio.wait_for(frames.get(), 30) == b"data: beat\n\n"  # the stream lives on
        assert not stream.done()

        db.start(port=db_port)  # same data dir, same port: the same URI
        r = await api.push(space, "g1", [mutation(2, "c1", args=10)])
        assert r.status == 200 and r.body == {}
        while b"poke" not in await asyncio.wait_for(frames.get(), 30):
            pass  # beats until the commit's poke
        r = await api.pull(space, "g1")
        assert r.status == 200 and r.body["lastMutationIDChanges"] == {"c1": 2}
        assert r.body["patch"] == [{"op": "put", "key": "count", "value": 11}]
    finally:
        http.close()
        server.stop()
        await client.close()
        db.stop()


# ---- kill -9 in the middle of concurrent pushes

PER_PUSH = 3  # mutations per push: a partly applied push would leave lmid off a multiple of 3


def post(url: str, path: str, body: dict, timeout: float = 30) -> dict:
    request = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def pull(url: str, space: str, group: str, cookie=None) -> dict:
    return post(url, f"/api/replicache/pull?spaceID={space}", pull_body(group, cookie))


class Pusher(threading.Thread):
    """One client group with one client, pushing PER_PUSH mutations at a time until refused."""

    def __init__(self, url: str, n: int, progress: threading.Semaphore) -> None:
        super().__init__(daemon=True)
        self.url, self.group, self.client, self.args = url, f"g{n}", f"c{n}", 10**n
        self.progress = progress
        self.acked = 0  # highest id answered 200
        self.sent = 0  # highest id ever sent

    def run(self) -> None:
        while True:
            first = self.acked + 1
            batch = [mutation(i, self.client, args=self.args) for i in range(first, first + PER_PUSH)]
            body = push_body(self.group, batch)
            self.sent = first + PER_PUSH - 1
            try:
                assert post(self.url, "/api/replicache/push?spaceID=crash", body) == {}
            except (OSError, urllib.error.URLError):
                return  # the server is gone
            self.acked = self.sent
            self.progress.release()


def test_kill_9_mid_burst_loses_no_acknowledged_push(tmp_path: Path):
    server = LiveServer(data_dir=tmp_path).start()
    try:
        post(server.url, "/api/replicache/createSpace", {"spaceID": "crash"})
        progress = threading.Semaphore(0)
        pushers = [Pusher(server.url, n, progress) for n in range(4)]
        for p in pushers:
            p.start()
        highest_cookie = 0
        for _ in range(60):  # a burst: 60 acknowledged pushes, with pulls in between
            assert progress.acquire(timeout=60)
            highest_cookie = max(highest_cookie, pull(server.url, "crash", "watcher")["cookie"])
        db_pid = int((tmp_path / "secantusd.pid").read_text())
        server.kill()  # SIGKILL while the pushers keep going
    finally:
        server.kill()
    for p in pushers:
        p.join(60)
        assert not p.is_alive()
    # The embedded database must not outlive its server holding the data dir.
    deadline = time.monotonic() + 60
    while _is_secantus(db_pid):  # gone or a zombie: either way its files are closed
        assert time.monotonic() < deadline, "the embedded database outlived a SIGKILLed server"
        time.sleep(0.1)

    with LiveServer(data_dir=tmp_path) as server:
        count = 0
        for p in pushers:
            lmid = pull(server.url, "crash", p.group)["lastMutationIDChanges"].get(p.client, 0)
            assert p.acked <= lmid <= p.sent, (p.group, p.acked, lmid, p.sent)
            assert lmid % PER_PUSH == 0, "a push was partly applied"
            count += lmid * p.args
        view = pull(server.url, "crash", "after")
        assert view["patch"] == [{"op": "put", "key": "count", "value": count}]
        assert view["cookie"] >= highest_cookie
        assert pull(server.url, "crash", "watcher", highest_cookie)["cookie"] >= highest_cookie


# ---- a push sent again after a timeout (possibly still in flight) applies once


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [{"group_commit": True}, {"group_commit": False}], indirect=True)
async def test_retried_push_is_idempotent(api, settings):
    space = await api.create_space()
    batch = [mutation(1, "c1", args=1), mutation(2, "c1", args=10), mutation(1, "c2", args=100)]
    replies = await asyncio.gather(*[api.push(space, "g1", batch) for _ in range(4)])
    assert [r.status for r in replies] == [200] * 4
    assert (await api.push(space, "g1", batch)).status == 200  # once more, after the answers
    r = await api.pull(space, "g1")
    assert r.body["lastMutationIDChanges"] == {"c1": 2, "c2": 1}
    assert r.body["patch"] == [{"op": "put", "key": "count", "value": 111}]
    again = await api.push(space, "g1", [*batch, mutation(3, "c1", args=1000)])
    assert again.status == 200
    assert await api.view(space) == {"count": 1111}
