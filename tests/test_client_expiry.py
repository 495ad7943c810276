"""Client expiry: idle groups removed with their clients, tombstoned, never made again at lmid 0."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server import client_expiry
from server.protocol import parse_pull, parse_push
from server.testing import ROOT, pull_body, push_body
from tests.helpers import database_state, mutation

pytestmark = pytest.mark.gen_test

HOUR = 3600.0
CSNF = {"error": "ClientStateNotFound"}


async def counts(store, space):
    view = await store.admin.space(space)
    return view["clientGroups"], view["clients"]


async def test_idle_groups_are_removed_and_stay_removed(api, store):
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1"), mutation(2, "c1")])
    await api.push(space, "g2", [mutation(1, "c2")])
    assert await store.expire_groups(HOUR) == 0  # both just seen
    version = await store.space_version(space)
    later = datetime.now(UTC) + timedelta(hours=2)
    assert await store.expire_groups(HOUR, now=later) == 2
    assert await store.space_version(space) == version + 1  # one version for the whole run
    assert await store.expire_groups(HOUR, now=later) == 0
    assert await counts(store, space) == (0, 0)

    before = await database_state(store)
    r = await api.push(space, "g1", [mutation(3, "c1", args=50)])
    assert r.status == 200 and r.body == CSNF
    r = await api.push(space, "g1", [mutation(1, "c9", args=50)])  # a new client of the old group
    assert r.status == 200 and r.body == CSNF
    r = await api.pull(space, "g1", 2)
    assert r.status == 200 and r.body == CSNF
    r = await api.pull(space, "g1")
    assert r.status == 200 and r.body == CSNF
    assert await database_state(store) == before  # nothing came back at lmid 0
    assert await api.view(space) == {"count": 3}
    r = await api.push(space, "g3", [mutation(1, "c3")])  # the client's fresh start works
    assert r.status == 200 and r.body == {}


@pytest.mark.parametrize("settings", [{"client_ttl_days": 1e-9}], indirect=True)
async def test_push_and_pull_keep_a_group_alive(api, store, settings):
    """lastSeen is refreshed at most every tenth of the TTL: here, on every request."""
    space = await api.create_space()
    await api.push(space, "pusher", [mutation(1, "c1")])
    cookie = (await api.pull(space, "puller")).body["cookie"]
    await api.pull(space, "idle")
    cutoff = datetime.now(UTC) + timedelta(milliseconds=1)
    while datetime.now(UTC) <= cutoff:  # the clock passes the cutoff: every group is idle now
        await asyncio.sleep(0.002)
    await api.push(space, "pusher", [mutation(1, "c1")])  # a resend changes nothing but is activity
    assert (await api.pull(space, "puller", cookie)).body["patch"] == []  # the fast path's case
    assert await store.expire_groups(0.0, now=cutoff) == 1
    remaining = {g["clientGroupID"] for g in (await store.admin.space(space))["groups"]}
    assert remaining == {"puller", "pusher"}


async def test_periodic_task_with_a_short_ttl(api, store):
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1")])
    task = client_expiry.start(store, ttl_days=0.2 / client_expiry.DAY, interval_seconds=0.05)
    try:
        deadline = time.monotonic() + 30
        while (await counts(store, space))[0]:
            assert time.monotonic() < deadline, "the periodic expiry never removed the idle group"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
    r = await api.push(space, "g1", [mutation(2, "c1")])
    assert r.body == CSNF
    assert client_expiry.start(store, 0, 1) is None  # TTL 0: off


async def test_expiry_script(api, store, mongo_uri, db_name):
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


async def push_as(store, space, user, group, mutations):
    return await store.push(space, replace(parse_push(push_body(group, mutations)), user_id=user))


async def pull_as(store, space, user, group, cookie=None):
    return json.loads(await store.pull(space, replace(parse_pull(pull_body(group, cookie)), user_id=user)))


@pytest.mark.parametrize("settings", [{"max_groups_per_user": 3}], indirect=True)
async def test_a_users_groups_past_the_cap_start_over_least_recently_seen_first(store, settings):
    """Issue 18.8: fresh group ids cannot grow one user's storage without end. Past the cap
    the user's least recently seen groups go as expired ones do: ClientStateNotFound, and
    the client starts over. Nobody else's groups are touched, and without auth (no user)
    there is no cap."""
    space = await store.create_space()
    other = await store.create_space()
    await push_as(store, other, "u2", "h1", [mutation(1, "d1")])
    for n in range(1, 6):  # g1 first, so least recently seen
        await push_as(store, space if n % 2 else other, "u1", f"g{n}", [mutation(1, f"c{n}")])
    for n in range(1, 6):
        await push_as(store, space, None, f"anon{n}", [mutation(1, f"a{n}")])
    await store.drain()  # the caps run after the commits, in the background

    assert await pull_as(store, space, "u1", "g1") == CSNF
    assert await pull_as(store, other, "u1", "g2") == CSNF
    for where, group in ((space, "g3"), (other, "g4"), (space, "g5")):
        assert "cookie" in await pull_as(store, where, "u1", group)
    assert await push_as(store, space, "u1", "g1", [mutation(2, "c1")]) == CSNF  # never made again
    assert "cookie" in await pull_as(store, other, "u2", "h1")
    for n in range(1, 6):
        assert "cookie" in await pull_as(store, space, None, f"anon{n}")
    assert await counts(store, space) == (7, 7)  # g3, g5 and the five anonymous ones
    assert await counts(store, other) == (2, 2)  # h1 and g4
    assert "cookie" in await pull_as(store, other, "u1", "g6")  # a group a pull made counts too
    await store.drain()
    assert await pull_as(store, space, "u1", "g3") == CSNF  # now the least recently seen
