"""What the store asks of the database, counted with PyMongo command monitoring: round trips
per request (they do not depend on machine speed), every query on an index, and every
command on space data naming its space (a sharded cluster's shard key)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from server.admin.sessions import AdminSessions
from server.protocol import parse_pull, parse_push
from server.store import Store, schema
from tests.helpers import mutation

pytestmark = pytest.mark.gen_test

IGNORED = {"hello", "isMaster", "ismaster", "ping", "endSessions", "buildInfo", "getMore", "killCursors"}


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: Any) -> None:
        if event.command_name not in IGNORED:
            self.seen.append((event.command_name, dict(event.command)))

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]

    def clear(self) -> None:
        self.seen.clear()


@pytest.fixture
def watched(io_loop: Any, mongo_uri: str) -> Iterator[tuple[AsyncMongoClient, Commands]]:
    commands = Commands()
    client: AsyncMongoClient = AsyncMongoClient(mongo_uri, event_listeners=[commands])
    yield client, commands
    io_loop.run_sync(client.close)


async def counted(watched, db_name: str, **options: Any) -> tuple[Store, Commands]:
    client, commands = watched
    store = Store(client, db_name, **options)
    await store.init()
    commands.clear()
    return store, commands


def push(group: str, *mutations: dict) -> Any:
    return parse_push({"clientGroupID": group, "mutations": list(mutations)})


async def pull(store: Store, space: str, group: str, cookie: Any = None) -> dict[str, Any]:
    return json.loads(await store.pull(space, parse_pull({"clientGroupID": group, "cookie": cookie})))


# ---- round trips (issue 12.1)


async def test_a_steady_push_is_one_write_and_the_commit(watched, db_name):
    store, commands = await counted(watched, db_name)
    space = await store.create_space()
    for i in (1, 2):
        assert await store.push(space, push("g", mutation(i, "c"))) == {}
    commands.clear()
    assert await store.push(space, push("g", mutation(3, "c"))) == {}
    assert commands.names() == ["update", "commitTransaction"]


async def test_pushes_to_many_spaces_share_one_transaction(watched, db_name):
    """Group commit across spaces (issue 12.2): one update command carries every space's
    writes, each space's version moves once, each push gets its own answer."""
    seen: list[tuple[str, int]] = []
    store, commands = await counted(watched, db_name, on_commit=lambda s, v: seen.append((s, v)))
    spaces = [await store.create_space() for _ in range(5)]
    for space in spaces:
        assert await store.push(space, push(f"g-{space}", mutation(1, "c"))) == {}
    commands.clear()
    seen.clear()
    # All queued before the runner first looks at the queue.
    answers = await asyncio.gather(
        *(store.push(space, push(f"g-{space}", mutation(n, "c"))) for space in spaces for n in (2, 3))
    )
    assert answers == [{}] * 10
    assert commands.names() == ["update", "commitTransaction"]
    assert sorted(seen) == sorted((space, 2) for space in spaces)  # one commit, one poke each
    for space in spaces:
        assert (await pull(store, space, f"viewer-{space}"))["patch"] == [
            {"op": "put", "key": "count", "value": 3}
        ]


@pytest.mark.parametrize("sole_writer,unchanged", [(True, []), (False, ["find"])])
async def test_pull_round_trips(watched, db_name, sole_writer, unchanged):
    store, commands = await counted(watched, db_name, sole_writer=sole_writer)
    space = await store.create_space()
    await store.push(space, push("g", mutation(1, "c")))
    cookie = (await pull(store, space, "g"))["cookie"]
    await store.push(space, push("g", mutation(2, "c")))
    commands.clear()
    behind = await pull(store, space, "g", cookie)
    assert behind["lastMutationIDChanges"] == {"c": 2}
    assert commands.names() == ["find"]  # one change behind: one snapshot query (at most 2)
    commands.clear()
    assert (await pull(store, space, "g", behind["cookie"]))["patch"] == []
    # Unchanged: nothing when every commit is this process's, else one read.
    assert commands.names() == unchanged


# ---- every query on an index (issue 19.2), every space data command naming its space (12.4)


async def put(tx: Any, kv: Any) -> None:
    await tx.put(kv[0], kv[1])


async def scan(tx: Any, prefix: Any) -> None:
    await tx.scan(prefix)


async def workload(store: Store) -> None:
    """Every kind of request the server makes of its store."""
    store.mutators = {**store.mutators, "put": put, "scan": scan}
    a = await store.create_space()
    b = await store.create_space("named-space")
    assert await store.space_exists(a) and not await store.space_exists("never")
    await pull(store, a, "g1")  # a new group binds on a pull
    await store.push(a, push("g1", mutation(1, "c1"), mutation(2, "c1", "put", ["k", 1])))
    await store.push(a, push("g2", mutation(1, "c2", "scan", "k")))  # a new group on a push
    await asyncio.gather(
        store.push(a, push("g1", mutation(3, "c1"))), store.push(b, push("g3", mutation(1, "c3")))
    )
    cookie = (await pull(store, a, "g1"))["cookie"]
    await store.push(a, push("g1", mutation(4, "c1")))
    await pull(store, a, "g1", cookie)
    await pull(store, a, "g1", cookie + 100)  # ahead: ClientStateNotFound
    await store.write(a, lambda tx: tx.put("title", "server"))
    await store.admin.list_spaces("", None, 10)
    await store.admin.list_spaces("named", None, 10)
    await store.admin.list_spaces("", 2, 10)
    await store.admin.space(a)
    await store.admin.entries(a, "", 10)
    [piece async for piece in store.admin.export(a)]
    await store.restore_space(b, [("x", "1")], create=False)
    await store.restore_space("restored", [("y", "2")], create=True)
    await store.delete_space(b)
    await store.create_space(b)  # made again after a delete
    await store.expire_groups(60, now=datetime.now(UTC) + timedelta(days=1))
    await store.space_version(a)
    sessions = AdminSessions(store, 60)  # the admin login's own records
    session = await sessions.start("fingerprint")
    assert await sessions.valid(session, "fingerprint")
    await sessions.end(session)


def queries(commands: Commands) -> list[tuple[str, str, dict[str, Any]]]:
    """(command, collection, filter) for every filter in the recorded commands."""
    out = []
    for name, cmd in commands.seen:
        coll = cmd.get(name)
        if name == "find":
            out.append((name, coll, cmd.get("filter", {})))
        elif name == "update":
            out += [(name, coll, u["q"]) for u in cmd.get("updates", [])]
        elif name == "delete":
            out += [(name, coll, d["q"]) for d in cmd.get("deletes", [])]
        elif name in ("findAndModify", "count"):
            out.append((name, coll, cmd.get("query", {})))
    return out


async def test_every_query_reads_through_an_index(watched, db_name):
    store, commands = await counted(watched, db_name)
    await workload(store)
    checked = set()
    for name, coll, query in queries(commands):
        key = (coll, repr(query))
        if key in checked:
            continue
        checked.add(key)
        plan = await store.db.db.command("explain", {"find": coll, "filter": query}, verbosity="queryPlanner")
        assert "COLLSCAN" not in str(plan["queryPlanner"]["winningPlan"]), (name, coll, query)
    assert len(checked) > 20  # the workload reached the store's queries
    assert {name for name, _ in commands.seen} >= {"find", "update", "delete", "insert", "commitTransaction"}


async def test_every_command_on_space_data_names_its_space(watched, db_name):
    store, commands = await counted(watched, db_name)
    await workload(store)
    # The admin list and finding idle groups span spaces, in their own small collections.
    on_data = [(n, q) for n, coll, q in queries(commands) if coll == schema.DATA]
    assert len(on_data) > 20
    for name, query in on_data:
        assert "space" in query, (name, query)
    inserts = [cmd for name, cmd in commands.seen if name == "insert" and cmd["insert"] == schema.DATA]
    assert inserts and all("space" in doc for cmd in inserts for doc in cmd["documents"])
