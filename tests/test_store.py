"""Store-level behaviour: group commit batches, per-push refusal inside a batch, commit hook."""

from __future__ import annotations

import asyncio
import json

import pytest
from pymongo import AsyncMongoClient, monitoring

from server.protocol import parse_pull, parse_push
from server.store import Store
from tests.helpers import mutation

pytestmark = pytest.mark.gen_test


def push_request(group: str, *mutations: dict) -> object:
    return parse_push({"clientGroupID": group, "mutations": list(mutations)})


async def pull_body(store, space: str, group: str, cookie=None) -> dict:
    return json.loads(await store.pull(space, parse_pull({"clientGroupID": group, "cookie": cookie})))


@pytest.mark.parametrize(
    "settings,versions", [({"group_commit": True}, 1), ({"group_commit": False}, 20)], indirect=["settings"]
)
async def test_group_commit_applies_queued_pushes_together(store, settings, versions):
    space = await store.create_space()
    # All 20 are queued before the space's runner first looks at the queue.
    results = await asyncio.gather(
        *(store.push(space, push_request(f"g{i}", mutation(1, f"c{i}"))) for i in range(20))
    )
    assert results == [{}] * 20
    assert await store.space_version(space) == versions
    body = await pull_body(store, space, "g0")
    assert body["patch"] == [{"op": "put", "key": "count", "value": 20}]


async def test_refused_push_in_a_batch_leaves_the_others(store):
    space = await store.create_space()
    await store.push(space, push_request("owner", mutation(1, "taken")))
    results = await asyncio.gather(
        store.push(space, push_request("a", mutation(1, "ca", args=10))),
        store.push(space, push_request("thief", mutation(1, "cb", args=100), mutation(2, "taken", args=100))),
        store.push(space, push_request("c", mutation(1, "cc", args=1000))),
        return_exceptions=True,
    )
    assert results == [{}, {"error": "ClientStateNotFound"}, {}]  # the thief's cb never had 1 either
    body = await pull_body(store, space, "thief")
    assert body["lastMutationIDChanges"] == {}
    assert body["patch"] == [{"op": "put", "key": "count", "value": 1011}]


async def test_failed_mutator_in_a_batch_does_not_leak_into_the_next_push(store):
    async def half_then_fail(tx, _):
        await tx.put("count", -1)
        raise ValueError("no")

    store.mutators = {**store.mutators, "bad": half_then_fail}
    space = await store.create_space()
    await asyncio.gather(
        store.push(space, push_request("a", mutation(1, "ca", args=5), mutation(2, "ca", "bad", None))),
        store.push(space, push_request("b", mutation(1, "cb", args=1))),
    )
    body = await pull_body(store, space, "a")
    assert body["patch"] == [{"op": "put", "key": "count", "value": 6}]
    assert body["lastMutationIDChanges"] == {"ca": 2}


async def test_commit_hook_runs_after_commit_and_only_on_change(mongo_client, db_name):
    seen: list[tuple[str, int]] = []
    checks: list[asyncio.Task] = []

    def on_commit(space_id: str, version: int) -> None:
        # What a poked client does: pull. It must already see the commit.
        checks.append(asyncio.ensure_future(pull_body(store, space_id, "watcher")))
        seen.append((space_id, version))

    store = Store(mongo_client, db_name, on_commit=on_commit)
    await store.init()
    space = await store.create_space()
    await store.push(space, push_request("g", mutation(1, "c", args=3)))
    await store.push(space, push_request("g", mutation(1, "c", args=3)))  # a resend: no change
    assert seen == [(space, 1)]
    body = await checks[0]
    assert body["patch"] == [{"op": "put", "key": "count", "value": 3}]


async def test_empty_push_binds_the_group_without_a_version(store):
    a, b = await store.create_space(), await store.create_space()
    assert await store.push(a, push_request("g")) == {}
    assert await store.space_version(a) == 0
    assert await store.push(b, push_request("g", mutation(1, "c"))) == {"error": "ClientStateNotFound"}


# A push starts from what this process's last commit left only while nobody else wrote
# to the space since: another Store on the same database stands for another process.


async def count_of(store, space: str) -> int:
    body = await pull_body(store, space, "reader")
    return body["patch"][0]["value"] if body["patch"] else 0


async def another_process(mongo_client, db_name) -> Store:
    other = Store(mongo_client, db_name, sole_writer=False)
    await other.init()
    return other


async def test_push_sees_what_another_process_committed_in_between(store, mongo_client, db_name):
    other = await another_process(mongo_client, db_name)
    space = await store.create_space()
    assert await store.push(space, push_request("g", mutation(1, "c", args=1))) == {}
    assert await other.push(space, push_request("h", mutation(1, "d", args=10))) == {}
    assert await other.push(space, push_request("g", mutation(2, "c", args=100))) == {}
    # c's last mutation id is 2 now (written by the other process): 2 is skipped, 3 applies.
    assert (
        await store.push(space, push_request("g", mutation(2, "c", args=1000), mutation(3, "c", args=5)))
        == {}
    )
    assert await count_of(store, space) == 116
    body = await pull_body(store, space, "g")
    assert body["lastMutationIDChanges"] == {"c": 3}


async def test_push_into_a_space_deleted_and_made_again_reads_it_afresh(store, mongo_client, db_name):
    other = await another_process(mongo_client, db_name)
    space = await store.create_space()
    assert await store.push(space, push_request("g", mutation(1, "c", args=1))) == {}
    # Another process deletes the space and makes it again.
    await other.delete_space(space)
    await other.create_space(space)
    assert await other.push(space, push_request("h", mutation(1, "d", args=5))) == {}
    # c is gone with the old space: its state is lost, and the new count is untouched.
    assert await store.push(space, push_request("g", mutation(2, "c", args=1))) == {
        "error": "ClientStateNotFound"
    }
    assert await count_of(store, space) == 5


async def test_push_from_a_group_collected_by_another_process_is_refused(store, mongo_client, db_name):
    from datetime import UTC, datetime, timedelta

    other = await another_process(mongo_client, db_name)
    space = await store.create_space()
    assert await store.push(space, push_request("g", mutation(1, "c", args=1))) == {}
    assert await other.expire_groups(60, now=datetime.now(UTC) + timedelta(days=1)) == 1
    assert await store.push(space, push_request("g", mutation(2, "c", args=1))) == {
        "error": "ClientStateNotFound"
    }
    assert await count_of(store, space) == 1


async def test_concurrent_checks_of_one_space_share_one_query(mongo_uri, db_name):
    class Finds(monitoring.CommandListener):
        count = 0

        def started(self, event) -> None:
            if event.command_name == "find" and event.command.get("filter", {}).get("kind") == "h":
                self.count += 1

        def succeeded(self, event) -> None:
            pass

        def failed(self, event) -> None:
            pass

    finds = Finds()
    client = AsyncMongoClient(mongo_uri, event_listeners=[finds])
    try:
        store = Store(client, db_name)
        await store.init()
        space = await store.create_space()
        finds.count = 0
        assert await asyncio.gather(*(store.space_exists(space) for _ in range(50))) == [True] * 50
        assert await asyncio.gather(*(store.space_exists("nope") for _ in range(50))) == [False] * 50
        assert finds.count == 2
        assert await store.space_exists(space) and finds.count == 3  # a later check asks again
    finally:
        await client.close()


async def test_push_past_what_this_process_knows_reads_before_refusing(store, mongo_client, db_name):
    """Our state says c is at 1, another process took it to 2: 3 is next, not a lost mutation."""
    other = await another_process(mongo_client, db_name)
    space = await store.create_space()
    assert await store.push(space, push_request("g", mutation(1, "c", args=1))) == {}
    assert await other.push(space, push_request("g", mutation(2, "c", args=10))) == {}
    assert await store.push(space, push_request("g", mutation(3, "c", args=100))) == {}
    assert await count_of(store, space) == 111


async def test_a_space_made_again_never_serves_the_old_one_to_an_old_tab(store):  # issue 11.8
    space = await store.create_space()
    assert await store.push(space, push_request("g", mutation(1, "c", args=1))) == {}
    old = await pull_body(store, space, "g")
    await store.delete_space(space)
    assert await store.create_space(space) == space
    assert await store.push(space, push_request("h", mutation(1, "d", args=5))) == {}
    # The old tab's group was ended with the old space: it starts over.
    assert await pull_body(store, space, "g", old["cookie"]) == {"error": "ClientStateNotFound"}
    # A group forked from the old tab (a new id, the old cookie) gets the new space whole.
    forked = await pull_body(store, space, "forked", old["cookie"])
    assert forked["cookie"] > old["cookie"]
    assert forked["patch"] == [{"op": "clear"}, {"op": "put", "key": "count", "value": 5}]
    assert forked["lastMutationIDChanges"] == {}
