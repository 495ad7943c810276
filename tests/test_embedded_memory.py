"""Issue 16: the embedded database's memory is bounded (bounds passed to it, its RSS on
/metrics and /admin, supervised restarts that lose no acknowledged push)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import tornado.httpserver
import tornado.testing
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient
from tornado.httpclient import AsyncHTTPClient

from server.app import make_app
from server.config import Settings
from server.embedded import EmbeddedMongo, rss_bytes
from server.memory_guard import MB, MemoryGuard, decide
from server.pokes import PokeHub
from server.store import Store
from server.testing import ROOT, LiveServer
from tests.helpers import Api, mutation

TOKEN = "admin-token-for-memory-" + "x" * 16


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def child_pid(data_dir: Path) -> int:
    return int((data_dir / "secantusd.pid").read_text())


def test_bounds_reach_the_child_and_its_rss_is_on_metrics_and_admin(tmp_path):
    flags = ["--embedded-cache-size", "96M", "--embedded-oplog-max-entries", "7000"]
    flags += ["--embedded-oplog-retention-seconds", "1800", "--admin-token", TOKEN]
    with LiveServer(*flags, data_dir=tmp_path) as server:
        pid = child_pid(tmp_path)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        for flag, value in [
            ("--cache-size", "96M"),
            ("--oplog-max-entries", "7000"),
            ("--oplog-retention-seconds", "1800.0"),
            ("--sync-on-commit", None),
        ]:
            assert flag in argv, argv
            if value is not None:
                assert argv[argv.index(flag) + 1] == value, argv
        metrics = scrape(server.url)
        actual = rss_bytes(pid)
        assert actual is not None and actual > 10 * MB
        # The child's own RSS, not the server's (the two can be close: nearer the child's).
        reported, server_rss = metrics["replicache_embedded_db_rss_bytes"], rss_bytes(server.process.pid)
        assert abs(reported - actual) < 0.2 * actual
        assert server_rss is not None and abs(reported - actual) <= abs(reported - server_rss)
        assert metrics["replicache_embedded_db_restarts"] == 0
        request = urllib.request.Request(server.url + "/admin", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as r:
            page = r.read().decode()
        assert 'id="embedded-db"' in page and "MB resident" in page and "0 supervised restarts" in page


def test_workers_read_the_child_the_parent_owns(tmp_path):
    with LiveServer("--processes", "2", data_dir=tmp_path) as server:
        pid = child_pid(tmp_path)
        for _ in range(4):  # connections land on either worker
            value = scrape(server.url)["replicache_embedded_db_rss_bytes"]
            assert abs(value - rss_bytes(pid)) < 0.2 * value


def test_no_embedded_metrics_on_a_real_mongodb(mongo_uri):
    """With MONGODB_URI there is no child to report on: the series are absent, not zero."""
    with LiveServer(mongodb_uri=mongo_uri) as server:
        names = scrape(server.url)
    assert "replicache_sse_listeners" in names
    assert not any(name.startswith("replicache_embedded_db") for name in names)


def test_a_bound_below_a_fresh_database_is_reported_not_looped(tmp_path):
    flags = ["--embedded-max-rss-mb", "1", "--embedded-check-seconds", "0.1"]
    with LiveServer(*flags, data_dir=tmp_path) as server:
        pid = child_pid(tmp_path)
        deadline = time.monotonic() + 60
        # The warning line is the only sign (another process's log): poll for it, bounded.
        while not any("is below what the embedded database takes" in line for line in server.output):
            assert server.process.poll() is None and time.monotonic() < deadline, server.output
            time.sleep(0.05)
        assert child_pid(tmp_path) == pid and scrape(server.url)["replicache_embedded_db_restarts"] == 0


def test_bench_soak_finds_the_database_and_fits_slopes(tmp_path):
    """scripts/bench.py --scenarios soak, tiny: shapes and correctness, not speed."""
    out = tmp_path / "soak.json"
    bench = [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--scenarios", "soak"]
    run = subprocess.run(
        [*bench, "--soak-seconds", "10", "--procs", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    soak = json.loads(out.read_text())["soak"]
    assert soak["pushes"] > 0 and soak["pulls"] >= soak["pushes"] - soak["writers"]
    assert soak["errors"] == 0, soak["error_detail"]
    assert soak["listeners"].get("ok", 0) > 0
    assert all(x["db_pid"] and x["db_kb"] > 10_000 and x["server_kb"] > 10_000 for x in soak["samples"])
    for key in ("server_kb_per_push", "db_kb_per_push", "db_leak_kb_per_push"):
        assert isinstance(soak[key], float), key
    assert soak["db_restarts"] == 0
    assert "soak (2 writers" in run.stdout


def test_decide():
    assert decide(100 * MB, 200 * MB, 50 * MB) == "ok"
    assert decide(300 * MB, 200 * MB, 50 * MB) == "restart"
    assert decide(300 * MB, 200 * MB, None) == "restart"
    assert decide(300 * MB, 200 * MB, 250 * MB) == "bound_too_low"
    assert decide(300 * MB, 0, 50 * MB) == "ok"  # 0: never
    assert decide(None, 200 * MB, 50 * MB) == "ok"  # not running: the other branch of check()


def test_guard_starts_a_dead_database_again(tmp_path):
    db = EmbeddedMongo(str(tmp_path))
    db.start()
    guard = MemoryGuard(db, max_rss_mb=0, check_seconds=3600)  # checked by hand below
    try:
        old = db.pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        db.process.wait()
        guard.check()
        assert db.pid not in (None, old) and rss_bytes(db.pid) is not None
    finally:
        guard.stop()
        db.stop()


# ---- a restart under load loses no acknowledged push


class Pusher:
    """One client group and client pushing increments; a non-200 push is sent again with
    the same mutation, as the real client does."""

    def __init__(self, api: Api, space: str, n: int) -> None:
        self.api, self.space = api, space
        self.group, self.client = f"g{n}", f"c{n}"
        self.acked = 0
        self.statuses: dict[int, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            next_id = self.acked + 1
            r = await self.api.push(self.space, self.group, [mutation(next_id, self.client, args=1)])
            self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
            if r.status == 200:
                self.acked = next_id
            else:
                await asyncio.sleep(0.05)


@pytest.mark.gen_test(timeout=300)
async def test_restart_under_pushes_loses_nothing(tmp_path):
    db = EmbeddedMongo(str(tmp_path))
    uri = db.start()
    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)  # as the server's
    hub = PokeHub()
    store = Store(client, "restart", on_commit=hub.poke)
    await store.init()
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(make_app(Settings(), store, hub))
    server.add_sockets([sock])
    http = AsyncHTTPClient(force_instance=True, defaults={"request_timeout": 120})
    api = Api(http, f"http://127.0.0.1:{port}")
    stop = asyncio.Event()
    try:
        space = await api.create_space()
        pushers = [Pusher(api, space, n) for n in range(4)]
        tasks = [asyncio.create_task(p.run(stop)) for p in pushers]
        for _ in range(2):
            before = sum(p.acked for p in pushers)
            while sum(p.acked for p in pushers) < before + 20:  # pushes are flowing
                await asyncio.sleep(0.02)
            old = db.pid
            await asyncio.to_thread(db.restart)
            assert db.pid != old
        after = sum(p.acked for p in pushers)
        while sum(p.acked for p in pushers) < after + 20:  # and flow again afterwards
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.gather(*tasks)
        assert db.restarts == 2
        statuses = {s for p in pushers for s in p.statuses}
        assert statuses <= {200, 503}, [p.statuses for p in pushers]
        view = await api.pull(space, "viewer")
        assert view.status == 200
        # Every acknowledged push is there exactly once, and nothing else is.
        assert view.body["patch"] == [{"op": "put", "key": "count", "value": sum(p.acked for p in pushers)}]
        for p in pushers:
            r = await api.pull(space, p.group)
            assert r.body["lastMutationIDChanges"] == {p.client: p.acked}
    finally:
        stop.set()
        http.close()
        server.stop()
        await client.close()
        db.stop()
