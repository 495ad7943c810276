"""Push semantics: spec checklist items 1-12, 14-15."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import database_state, mutation

pytestmark = pytest.mark.gen_test


async def test_new_client_push_then_pull(api):  # 1, 9
    space = await api.create_space()
    r = await api.push(space, "g1", [mutation(1, "c1", args=2), mutation(2, "c1", args=3)])
    assert r.status == 200 and r.body == {}
    r = await api.pull(space, "g1")
    assert r.body["lastMutationIDChanges"] == {"c1": 2}
    assert r.body["patch"] == [{"op": "put", "key": "count", "value": 5}]


async def test_resent_push_changes_nothing(api):  # 2
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1"), mutation(2, "c1")])
    before = (await api.pull(space, "g1")).body
    r = await api.push(space, "g1", [mutation(1, "c1"), mutation(2, "c1")])
    assert r.status == 200
    after = await api.pull(space, "g1", before["cookie"])
    assert after.body == {"cookie": before["cookie"], "lastMutationIDChanges": {}, "patch": []}


async def test_only_new_mutations_apply(api):  # 3
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1"), mutation(2, "c1")])
    await api.push(space, "g1", [mutation(1, "c1"), mutation(2, "c1"), mutation(3, "c1", args=10)])
    assert (await api.view(space)) == {"count": 12}


async def test_gap_is_never_applied(api):  # 4
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1")])
    r = await api.push(space, "g1", [mutation(3, "c1", args=100), mutation(4, "c1", args=100)])
    assert r.status == 200
    r = await api.pull(space, "g1")
    assert r.body["lastMutationIDChanges"] == {"c1": 1}
    assert await api.view(space) == {"count": 1}


async def test_gap_stops_only_that_client(api):  # 4, 6
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "a"), mutation(1, "b")])
    r = await api.push(
        space,
        "g1",
        [mutation(2, "a", args=10), mutation(4, "a", args=100), mutation(2, "b", args=20), mutation(3, "b")],
    )
    assert (r.status, r.body) == (200, {})
    r = await api.pull(space, "g1")
    assert r.body["lastMutationIDChanges"] == {"a": 2, "b": 3}
    assert await api.view(space) == {"count": 33}


async def test_known_client_past_its_lmid_starts_over(api, store):  # 11: the server lost mutations
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "a"), mutation(1, "b")])
    before = await database_state(store)
    r = await api.push(space, "g1", [mutation(2, "b", args=10), mutation(3, "a", args=100)])
    assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"})
    assert await database_state(store) == before  # nothing of it applied, b's 2 neither


async def test_mutations_apply_in_order(api, store):  # 5
    seen = []

    async def record(tx, args):
        seen.append(await tx.get("count"))

    store.mutators = {**store.mutators, "record": record}
    space = await api.create_space()
    await api.push(
        space,
        "g1",
        [
            mutation(1, "c1", args=4),
            mutation(2, "c1", "record", None),
            mutation(3, "c1", args=1),
            mutation(4, "c1", "record", None),
        ],
    )
    assert seen == [4, 5]


async def test_two_clients_of_one_group(api):  # 6
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "a"), mutation(1, "b"), mutation(2, "a")])
    r = await api.pull(space, "g1")
    assert r.body["lastMutationIDChanges"] == {"a": 2, "b": 1}
    assert await api.view(space) == {"count": 3}


@pytest.mark.parametrize("name,args", [("nope", 1), ("increment", "x"), ("increment", None), ("explode", 1)])
async def test_failed_mutator_advances_lmid_and_keeps_nothing(api, store, name, args):  # 7, 8
    async def explode(tx, delta):
        await tx.put("count", 999)
        await tx.put("other", 1)
        raise RuntimeError("boom")

    store.mutators = {**store.mutators, "explode": explode}
    space = await api.create_space()
    r = await api.push(space, "g1", [mutation(1, "c1", name, args), mutation(2, "c1", args=7)])
    assert r.status == 200
    r = await api.pull(space, "g1")
    assert r.body["lastMutationIDChanges"] == {"c1": 2}
    assert await api.view(space) == {"count": 7}


async def test_only_failed_mutations_still_bump_version(api):  # 7: lmid changes need a new cookie
    space = await api.create_space()
    before = (await api.pull(space, "g1")).body["cookie"]
    await api.push(space, "g1", [mutation(1, "c1", "nope")])
    r = await api.pull(space, "g1", before)
    assert r.body["cookie"] > before
    assert r.body["lastMutationIDChanges"] == {"c1": 1}
    assert r.body["patch"] == []


async def test_v0_push_not_supported(api):  # 10
    space = await api.create_space()
    body = {
        "profileID": "p",
        "clientID": "c1",
        "mutations": [{"id": 1, "name": "increment", "args": 1, "timestamp": 1}],
        "pushVersion": 0,
        "schemaVersion": "",
    }
    r = await api.post(f"/api/replicache/push?spaceID={space}", body)
    assert (r.status, r.body) == (200, {"error": "VersionNotSupported", "versionType": "push"})
    assert await api.view(space) == {}


async def test_unknown_client_starting_past_one(api, store):  # 11
    space = await api.create_space()
    before = await database_state(store)
    r = await api.push(space, "g1", [mutation(1, "known"), mutation(5, "lost", args=50)])
    assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"})
    assert await database_state(store) == before
    assert await api.view(space) == {}


async def test_missing_and_unknown_space(api, store):  # 12
    before = await database_state(store)
    r = await api.post("/api/replicache/push", {"clientGroupID": "g", "mutations": [], "pushVersion": 1})
    assert r.status == 400 and r.body["error"] == "MissingSpaceID"
    r = await api.push("no-such-space", "g1", [mutation(1, "c1")])
    assert r.status == 404 and r.body["error"] == "SpaceNotFound"
    r = await api.push("bad space!", "g1", [mutation(1, "c1")])
    assert r.status == 400 and r.body["error"] == "InvalidSpaceID"
    assert await database_state(store) == before


async def test_group_seen_in_another_space_starts_over(api, store):  # issue 11.5
    a, b = await api.create_space(), await api.create_space()
    await api.push(a, "g1", [mutation(1, "c1")])
    before = await database_state(store)
    r = await api.push(b, "g1", [mutation(2, "c1")])
    assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"})
    r = await api.pull(b, "g1")
    assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"})
    assert await database_state(store) == before
    # Its own space is untouched and keeps working.
    assert (await api.push(a, "g1", [mutation(2, "c1")])).body == {}
    assert await api.view(a) == {"count": 2} and await api.view(b) == {}


async def test_client_ids_are_per_group(api, store):
    """A client id used by another group is another client: it can neither advance nor
    read the first group's client."""
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c1")])
    before = await database_state(store)
    r = await api.push(space, "g2", [mutation(1, "c2", args=5), mutation(2, "c1", args=100)])
    assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"})  # g2's c1 never had 1
    assert await database_state(store) == before
    assert (await api.push(space, "g2", [mutation(1, "c1", args=5)])).body == {}
    assert (await api.pull(space, "g2")).body["lastMutationIDChanges"] == {"c1": 1}
    assert (await api.pull(space, "g1")).body["lastMutationIDChanges"] == {"c1": 1}
    assert await api.view(space) == {"count": 6}


async def test_same_mutation_pushed_concurrently_applies_once(api):  # 14
    space = await api.create_space()
    batch = [mutation(1, "c1", args=1), mutation(2, "c1", args=10)]
    replies = await asyncio.gather(*(api.push(space, "g1", batch) for _ in range(8)))
    assert [r.status for r in replies] == [200] * 8
    assert await api.view(space) == {"count": 11}


@pytest.mark.parametrize("settings", [{"group_commit": True}, {"group_commit": False}], indirect=True)
async def test_concurrent_pushers_exact_count(api, settings):  # 15
    space = await api.create_space()

    async def writer(n: int) -> list[int]:
        statuses = []
        for i in range(1, 31):
            statuses.append((await api.push(space, f"g{n}", [mutation(i, f"c{n}")])).status)
        return statuses

    results = await asyncio.gather(*(writer(n) for n in range(10)))
    assert [s for statuses in results for s in statuses] == [200] * 300
    assert await api.view(space) == {"count": 300}
    for n in range(10):
        assert (await api.pull(space, f"g{n}")).body["lastMutationIDChanges"] == {f"c{n}": 30}
