"""Pull semantics: spec checklist items 17-31."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import database_state, mutation

pytestmark = pytest.mark.gen_test


async def test_null_cookie_gets_everything(api, store):  # 17, 18, 31
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "a", args=3), mutation(1, "b")])
    await api.push(space, "g2", [mutation(1, "other")])
    r = await api.pull(space, "g1")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert isinstance(r.body["cookie"], int)
    assert r.body["lastMutationIDChanges"] == {"a": 1, "b": 1}  # 24: never g2's client
    assert r.body["patch"] == [{"op": "put", "key": "count", "value": 5}]


async def test_unchanged_cookie_same_answer(api):  # 19
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1")])
    first = (await api.pull(space, "g1")).body
    for _ in range(2):  # the second answer comes from the in-memory version
        again = (await api.pull(space, "g1", first["cookie"])).body
        assert again == {"cookie": first["cookie"], "lastMutationIDChanges": {}, "patch": []}


@pytest.mark.parametrize("settings", [{"pull_cache": True}, {"pull_cache": False}], indirect=True)
async def test_cookie_grows_after_write(api, settings):  # 20, 22, 23
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1")])
    c1 = (await api.pull(space, "g1")).body["cookie"]
    await api.pull(space, "g1", c1)  # warm the cache
    await api.push(space, "g1", [mutation(2, "c1", args=4)])
    r = (await api.pull(space, "g1", c1)).body
    assert r["cookie"] > c1
    assert r["patch"] == [{"op": "put", "key": "count", "value": 5}]
    assert r["lastMutationIDChanges"] == {"c1": 2}


async def test_deletes_are_reported(api, store):  # 22
    async def remove(tx, key):
        await tx.delete(key)

    async def put(tx, kv):
        await tx.put(kv[0], kv[1])

    store.mutators = {**store.mutators, "remove": remove, "put": put}
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c", "put", ["a", 1]), mutation(2, "c", "put", ["b", 2])])
    c = (await api.pull(space, "g1")).body["cookie"]
    await api.push(
        space, "g1", [mutation(3, "c", "remove", "a"), mutation(4, "c", "remove", "never-existed")]
    )
    r = (await api.pull(space, "g1", c)).body
    assert r["patch"] == [{"op": "del", "key": "a"}]
    assert await api.view(space) == {"b": 2}


async def test_lmids_only_of_changed_clients(api):  # 23
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "a"), mutation(1, "b")])
    c = (await api.pull(space, "g1")).body["cookie"]
    await api.push(space, "g1", [mutation(1, "a"), mutation(2, "a")])
    assert (await api.pull(space, "g1", c)).body["lastMutationIDChanges"] == {"a": 2}


async def test_effects_and_lmids_consistent_under_load(api):  # 25
    space = await api.create_space()
    done = False

    async def writer() -> None:
        nonlocal done
        for i in range(1, 41):
            await api.push(space, "g1", [mutation(i, "c1")])
        done = True

    async def reader() -> list[tuple[int, int]]:
        seen = []
        while not done:
            body = (await api.pull(space, "g1")).body
            count = {op["key"]: op["value"] for op in body["patch"]}.get("count", 0)
            seen.append((body["lastMutationIDChanges"].get("c1", 0), count))
        return seen

    _, seen = await asyncio.gather(writer(), reader())
    assert seen and all(lmid == count for lmid, count in seen)


async def test_forked_group_with_cookie(api):  # 26
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1")])
    c = (await api.pull(space, "g1")).body["cookie"]
    await api.push(space, "g1", [mutation(2, "c1")])
    r = await api.pull(space, "forked", c)
    assert r.status == 200
    assert r.body["patch"] == [{"op": "put", "key": "count", "value": 2}]
    assert r.body["lastMutationIDChanges"] == {}


@pytest.mark.parametrize("ahead", [1, 1000, 2**53 - 1])
async def test_cookie_from_the_future_starts_over(api, store, ahead):  # 27, 21; issue 11.1
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1", args=5)])
    before = await database_state(store)
    for group in ("g1", "new-group"):  # known or not: the version never moves to a cookie
        r = await api.pull(space, group, 1 + ahead)
        assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"})
    assert await database_state(store) == before
    assert (await api.pull(space, "g2")).body["cookie"] == 1  # everyone else is served as before
    await api.push(space, "g1", [mutation(2, "c1")])
    assert (await api.pull(space, "g1", 1)).body["cookie"] == 2


async def test_v0_pull_not_supported(api):  # 28
    space = await api.create_space()
    body = {
        "profileID": "p",
        "clientID": "c1",
        "cookie": None,
        "lastMutationID": 0,
        "pullVersion": 0,
        "schemaVersion": "",
    }
    r = await api.post(f"/api/replicache/pull?spaceID={space}", body)
    assert (r.status, r.body) == (200, {"error": "VersionNotSupported", "versionType": "pull"})


async def test_pull_is_read_only(api, store):  # 29
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1")])
    before = await database_state(store)
    for cookie in (None, 0, 1):
        await api.pull(space, "g1", cookie)
    assert await database_state(store) == before


async def test_pull_missing_and_unknown_space(api):  # 30
    r = await api.post("/api/replicache/pull", {"clientGroupID": "g", "cookie": None, "pullVersion": 1})
    assert r.status == 400 and r.body["error"] == "MissingSpaceID"
    r = await api.pull("unknown-space", "g1")
    assert r.status == 404 and r.body["error"] == "SpaceNotFound"


@pytest.mark.parametrize("cookie", ["7", {"order": 1}, -1, 1.5, True, [1], 2**53, 1e300])
async def test_foreign_cookie_shapes_start_over(api, store, cookie):  # issue 11.2
    """A cookie of a shape we never issue (say, a local store under the same name that once
    synced with a row-versioning backend): the client starts over; nothing is written."""
    space = await api.create_space()
    before = await database_state(store)
    r = await api.pull(space, "g1", cookie)
    assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"})
    assert await database_state(store) == before
