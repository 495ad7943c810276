"""Client GC: idle groups removed with their clients, tombstoned, never recreated at lmid 0."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from server import gc
from tests.helpers import mutation
from tests.live import ROOT

pytestmark = pytest.mark.gen_test

HOUR = 3600.0
CSNF = {"error": "ClientStateNotFound"}


async def test_idle_groups_are_removed_and_stay_removed(api, store):
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1"), mutation(2, "c1")])
    await api.push(space, "g2", [mutation(1, "c2")])
    assert await gc.collect(store, HOUR) == 0  # both just seen
    later = datetime.now(UTC) + timedelta(hours=2)
    assert await gc.collect(store, HOUR, now=later) == 2
    assert await gc.collect(store, HOUR, now=later) == 0
    assert await store.clients.count_documents({}) == 0
    assert await store.client_groups.count_documents({"removed": {"$exists": True}}) == 2

    r = await api.push(space, "g1", [mutation(3, "c1", args=50)])
    assert r.status == 200 and r.body == CSNF
    r = await api.push(space, "g1", [mutation(1, "c9", args=50)])  # a new client of the old group
    assert r.status == 200 and r.body == CSNF
    r = await api.pull(space, "g1", 2)
    assert r.status == 200 and r.body == CSNF
    assert await store.clients.count_documents({}) == 0  # nothing came back at lmid 0
    assert await api.view(space) == {"count": 3}
    r = await api.push(space, "g3", [mutation(1, "c3")])  # the client's fresh start works
    assert r.status == 200 and r.body == {}


async def test_push_and_pull_keep_a_group_alive(api, store):
    space = await api.create_space()
    await api.push(space, "pusher", [mutation(1, "c1")])
    cookie = (await api.pull(space, "puller")).body["cookie"]
    await api.pull(space, "idle")
    old = datetime.now(UTC) - timedelta(days=2)
    await store.client_groups.update_many({}, {"$set": {"lastSeen": old}})
    store.touch_seconds = 0.0  # refresh on every request
    await api.push(space, "pusher", [mutation(1, "c1")])  # a resend changes nothing but is activity
    assert (await api.pull(space, "puller", cookie)).body["patch"] == []  # the fast path's case
    assert await gc.collect(store, 86400) == 1
    remaining = await store.client_groups.distinct("_id", {"removed": {"$exists": False}})
    assert sorted(remaining) == ["puller", "pusher"]


async def test_periodic_task_with_a_short_ttl(api, store):
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1")])
    task = gc.start(store, ttl_days=0.2 / gc.DAY, interval_seconds=0.05)
    try:
        deadline = time.monotonic() + 30
        while not await store.client_groups.find_one({"_id": "g1", "removed": {"$exists": True}}):
            assert time.monotonic() < deadline, "the periodic GC never removed the idle group"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
    r = await api.push(space, "g1", [mutation(2, "c1")])
    assert r.body == CSNF
    assert gc.start(store, 0, 1) is None  # TTL 0: off


async def test_gc_script(api, store, mongo_uri, db_name):
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1")])
    out = subprocess.run(
        [
            sys.executable,
            "scripts/gc_clients.py",
            "--mongodb-uri",
            mongo_uri,
            "--db-name",
            db_name,
            "--client-ttl-days",
            "1e-9",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out.startswith("removed 1 client groups")
    assert (await api.pull(space, "g1")).body == CSNF
