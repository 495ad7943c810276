"""Several server processes on one database: pokes across processes (change streams),
exact counts under concurrent writers, watcher resume, --processes N."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tornado.httpclient import AsyncHTTPClient

from server.embedded import EmbeddedMongo
from server.protocol import parse_push
from server.store import Store
from server.testing import LiveServer, address, listen
from server.watcher import Watcher
from tests.helpers import Api, mutation, uid
from tests.test_ops import delta, scrape

pytestmark = pytest.mark.gen_test(timeout=120)


@pytest.fixture(scope="module")
def pair(mongo_uri) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Processes A and B: separate servers on one database."""
    db_flags = ("--db-name", uid("scaleout_"))
    with LiveServer(*db_flags, mongodb_uri=mongo_uri) as a, LiveServer(*db_flags, mongodb_uri=mongo_uri) as b:
        yield a, b


async def test_push_through_b_pokes_listener_on_a(pair):
    a, b = pair
    api_a, api_b = Api(AsyncHTTPClient(), a.url), Api(AsyncHTTPClient(), b.url)
    space = await api_a.create_space()
    await api_b.push(space, "writer", [mutation(1, "w1", args=4)])
    # A pulls first, so its fast path knows this version: it must not answer from it later.
    before = (await api_a.pull(space, "reader")).body
    assert before["patch"] == [{"op": "put", "key": "count", "value": 4}]
    listener = await listen(a.url, space)
    try:
        r = await api_b.push(space, "writer", [mutation(2, "w1", args=3)])
        assert r.status == 200
        await listener.wait_for("poke", timeout=10.0)
        after = (await api_a.pull(space, "reader", before["cookie"])).body
        assert after["cookie"] > before["cookie"]
        assert after["patch"] == [{"op": "put", "key": "count", "value": 7}]
    finally:
        listener.close()


async def test_ten_writers_across_two_processes_count_exactly(pair):
    a, b = pair
    writers, pushes = 10, 10
    space = await Api(AsyncHTTPClient(), a.url).create_space()
    statuses: list[int] = []

    async def writer(n: int) -> None:
        api = Api(AsyncHTTPClient(force_instance=True), (a, b)[n % 2].url)
        client = f"c{n}"
        for i in range(1, pushes + 1):
            r = await api.push(space, f"g{n}", [mutation(i, client)])
            statuses.append(r.status)
        api.http.close()

    await asyncio.gather(*(writer(n) for n in range(writers)))
    assert len(statuses) == writers * pushes
    assert [s for s in statuses if s != 200] == []
    for server in (a, b):
        api = Api(AsyncHTTPClient(), server.url)
        assert await api.view(space) == {"count": writers * pushes}
    r = await Api(AsyncHTTPClient(), b.url).pull(space, "g3")
    assert r.body["lastMutationIDChanges"] == {"c3": pushes}


async def post_together(urls: list[str], path: str, body: dict) -> list[tuple[int, object]]:
    """POST one body to every url at once: each server gets all but its last byte, then
    the last bytes go out together (a barrier), so the requests are in flight together."""
    raw = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n"
    ).encode()
    connections = [await asyncio.open_connection(*address(url)) for url in urls]
    for _, writer in connections:
        writer.write(head + raw[:-1])
        await writer.drain()
    for _, writer in connections:  # the barrier
        writer.write(raw[-1:])
    answers = []
    for reader, writer in connections:
        response = await asyncio.wait_for(reader.read(), timeout=30)
        writer.close()
        status_line, _, rest = response.partition(b"\r\n")
        answers.append((int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])))
    return answers


async def test_same_mutation_through_two_processes_at_once_applies_once(pair):
    """Checklist 14 across processes: no in-process queue can serialise these two. Then the
    same mutation through one process after the other committed it (either order)."""
    a, b = pair
    http = AsyncHTTPClient()
    space = await Api(http, a.url).create_space()
    path = f"/api/replicache/push?spaceID={space}"
    group, client = uid("g-"), uid("c-")  # the pair serves the whole module: fresh ids

    def body(n: int) -> dict:
        return {
            "profileID": "p",
            "clientGroupID": group,
            "pushVersion": 1,
            "schemaVersion": "",
            "mutations": [mutation(n, client, args=n)],
        }

    before = [await scrape(http, s.url) for s in pair]
    together, rounds = 20, 30
    for n in range(1, together + 1):
        answers = await post_together([a.url, b.url], path, body(n))
        assert answers == [(200, {}), (200, {})], f"round {n}: {answers}"
    after = [await scrape(http, s.url) for s in pair]
    for n in range(together + 1, rounds + 1):
        for server in (a, b) if n % 2 else (b, a):
            r = await Api(http, server.url).post(path, body(n))
            assert (r.status, r.body) == (200, {}), f"round {n}: {r.body}"
    expected = rounds * (rounds + 1) // 2  # each round's mutation once: 1 + 2 + ... + rounds
    for server in pair:
        api = Api(http, server.url)
        assert await api.view(space) == {"count": expected}
        assert (await api.pull(space, group)).body["lastMutationIDChanges"] == {client: rounds}
    retried = sum(
        delta(now, was, name)
        for now, was in zip(after, before, strict=True)
        for name in ("replicache_transaction_conflicts_total", "replicache_transaction_retries_total")
    )
    print(f"{together} rounds at once: {retried} transaction conflicts and retries in the two processes")
    # Measured 40-56: the pushes met in the database; zero would mean they never overlapped.
    assert retried > 0, "the two pushes never overlapped: this test would prove nothing"


async def test_one_poke_per_commit_through_the_change_stream(pair):
    """Checklist 16: K commits through B, one at a time, give exactly K pokes on a listener
    of A (A hears of them only through its change stream) and on a listener of B (B pokes
    at once, and must not poke again when the same commits come back on its own stream)."""
    a, b = pair
    http = AsyncHTTPClient()
    api_a, api_b = Api(http, a.url), Api(http, b.url)
    space, sentinel = await api_b.create_space(), await api_b.create_space()
    group, client = uid("g-"), uid("c-")  # the pair serves the whole module: fresh ids
    on_a, on_b = await listen(a.url, space), await listen(b.url, space)
    marks = {a: await listen(a.url, sentinel), b: await listen(b.url, sentinel)}
    before = {s: await scrape(http, s.url) for s in pair}
    commits = 10
    try:
        for n in range(1, commits + 1):
            assert (await api_b.push(space, group, [mutation(n, client)])).status == 200
            # A quiet gap: this commit's pokes arrive before the next commit, so none coalesce.
            await on_a.wait_for("poke", timeout=10.0)
            await on_b.wait_for("poke", timeout=10.0)
        # Sentinels: a commit through each process to another space. The other process
        # pokes for it only after its change stream delivered it, and so every event of the
        # commits above: a second poke for any of them has been written by then.
        for api in (api_a, api_b):
            assert (await api.push(sentinel, uid("g"), [mutation(1, uid("c"))])).status == 200
            for mark in marks.values():
                await mark.wait_for("poke", timeout=10.0)
        for server in pair:
            written = delta(await scrape(http, server.url), before[server], "replicache_pokes_total")
            assert written == commits + 2, (
                f"{server.url}: {written} pokes for {commits} commits + 2 sentinels"
            )
    finally:
        for sse in (on_a, on_b, *marks.values()):
            sse.close()


async def test_watcher_resumes_after_database_restart(tmp_path):
    db = EmbeddedMongo(str(tmp_path / "db"))
    uri = db.start()
    try:
        with LiveServer(mongodb_uri=uri) as a, LiveServer(mongodb_uri=uri) as b:
            api_a, api_b = Api(AsyncHTTPClient(), a.url), Api(AsyncHTTPClient(), b.url)
            space = await api_a.create_space()
            listener = await listen(a.url, space)
            try:
                assert (await api_b.push(space, "g", [mutation(1, "c")])).status == 200
                await listener.wait_for("poke", timeout=10.0)

                # The database goes away for longer than the driver's own resume attempt
                # (server selection, 5 s): the watcher's loop must resume from its token.
                db.stop()
                await wait_for_line(a, "change stream interrupted")
                db.start(port=urlsplit(uri).port)
                await wait_for_line(a, "change stream resumed")

                assert await push_until_200(api_b, space, "g", [mutation(2, "c", args=10)])
                await listener.wait_for("poke", timeout=10.0)
                assert await api_a.view(space) == {"count": 11}
                assert not any("afresh" in line for line in a.output)  # resumed from the token
            finally:
                listener.close()
    finally:
        db.stop()


async def wait_for_line(server: LiveServer, text: str, timeout: float = 30.0) -> None:
    # The server's output is the only sign of its watcher's state: poll it.
    deadline = time.monotonic() + timeout
    while not any(text in line for line in server.output):
        assert time.monotonic() < deadline, "".join(server.output)
        await asyncio.sleep(0.05)


async def push_until_200(api: Api, *args, timeout: float = 30.0) -> bool:
    """Right after a database restart a push may meet a stale pooled connection (503)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await api.push(*args)).status == 200:
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.mark.parametrize("settings", [{"pull_cache": False}], indirect=True)  # as with 2 processes
async def test_refused_resume_token_pokes_every_listened_space(
    api, store, hub, mongo_client, db_name, settings
):
    """History lost: the watcher starts afresh and pokes its listeners."""
    there = Store(mongo_client, db_name)  # another process's store on the same database
    watcher = Watcher(hub)
    try:
        space = await api.create_space()
        await watcher.open(store)
        watcher.start()
        first = (await api.pull(space, "g1")).body  # this process now knows the version
        with hub.listen(space) as channel:
            await watcher.close()  # the stream is down: a commit elsewhere goes unseen...
            body = {"profileID": "p", "clientGroupID": "g2", "pushVersion": 1, "schemaVersion": ""}
            await there.push(space, parse_push({**body, "mutations": [mutation(1, "c2", args=5)]}))
            seen = channel.seq
            watcher.token = {"_data": "00"}  # ...and the database refuses the token
            await watcher.open()
            assert channel.seq > seen  # poked
        after = (await api.pull(space, "g1", first["cookie"])).body
        assert after["patch"] == [{"op": "put", "key": "count", "value": 5}]  # not a stale answer
    finally:
        await watcher.close()


async def test_one_poke_per_commit(hub, mongo_client, db_name):
    """A local commit pokes at once; its change event, arriving later, does not poke again."""
    watcher = Watcher(hub)
    store = Store(mongo_client, db_name, on_commit=watcher.local_commit)
    await store.init()
    space = await store.create_space()
    body = {"profileID": "p", "clientGroupID": "g", "pushVersion": 1, "schemaVersion": ""}
    with hub.listen(space) as channel:
        assert await store.push(space, parse_push({**body, "mutations": [mutation(1, "c")]})) == {}
        assert channel.seq == 1
        version = await store.space_version(space)
        event = {"operationType": "update", "documentKey": {"_id": space}}
        watcher.apply({**event, "updateDescription": {"updatedFields": {"version": version}}})
        assert channel.seq == 1
        watcher.apply({**event, "updateDescription": {"updatedFields": {"version": version + 1}}})
        assert channel.seq == 2  # another process's commit
        watcher.apply({"operationType": "insert", "documentKey": {"_id": "new-space"}})
        assert channel.seq == 2


async def test_processes_2_serves_and_stops(tmp_path):
    with LiveServer("--processes", "2", data_dir=tmp_path) as server:
        workers = children(server.process.pid, "server")
        assert len(workers) == 2
        api = Api(AsyncHTTPClient(force_instance=True), server.url)
        space = await api.create_space()
        listener = await listen(server.url, space)
        try:
            # Separate connections: the kernel spreads them over both workers.
            for i in range(1, 11):
                api.http.close()
                api.http = AsyncHTTPClient(force_instance=True)
                assert (await api.push(space, "g", [mutation(i, "c")])).status == 200
                await listener.wait_for("poke", timeout=10.0)
            assert await api.view(space) == {"count": 10}
        finally:
            listener.close()
            api.http.close()
        assert sum("listening on" in line for line in server.output) == 1
        assert server.stop() == 0
        assert sum("exited normally" in line for line in server.output) == 2
        assert sum("change stream opened" in line for line in server.output) == 2  # a watcher each


async def test_one_process_on_its_embedded_database_runs_no_watcher(tmp_path):
    # Nobody else can write to that database: its own commits poke its listeners.
    with LiveServer("--log-level", "info", data_dir=tmp_path) as server:
        api = Api(AsyncHTTPClient(force_instance=True), server.url)
        space = await api.create_space()
        listener = await listen(server.url, space)
        try:
            assert (await api.push(space, "g", [mutation(1, "c", args=7)])).status == 200
            await listener.wait_for("poke", timeout=10.0)
            assert await api.view(space) == {"count": 7}
        finally:
            listener.close()
            api.http.close()
        assert server.stop() == 0
    assert any("listening on" in line for line in server.output)
    assert not any("change stream" in line for line in server.output)


async def test_workers_stop_when_the_parent_is_killed(tmp_path):
    server = LiveServer("--processes", "2", data_dir=tmp_path).start()
    workers = children(server.process.pid, "server")
    database = children(server.process.pid, "secantusd-py")
    assert len(workers) == 2 and len(database) == 1
    server.kill()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers + database):
        assert time.monotonic() < deadline, "a worker or the database outlived its parent"
        await asyncio.sleep(0.05)


def children(pid: int, program: str) -> list[int]:
    """Child processes of pid running program ("server" for `-m server`, or "secantusd-py")."""
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        argv = Path(f"/proc/{child}/cmdline").read_bytes().decode().split("\0")
        if argv[1:3] == ["-m", program] or Path(argv[1]).name == program:
            found.append(int(child))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead: its parent (init, here) has not reaped it yet.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture(scope="module")
def slow_pair(mongo_uri) -> Iterator[tuple[LiveServer, LiveServer]]:
    """A, and B whose change stream applies each event 3 s late (a test hook): an answer on B
    that waited on B's stream would be stale (issue 12.3)."""
    db_flags = ("--db-name", uid("slow_"))
    slow = {"REPLICACHE_TEST_WATCHER_DELAY": "3"}
    with (
        LiveServer(*db_flags, mongodb_uri=mongo_uri) as a,
        LiveServer(*db_flags, mongodb_uri=mongo_uri, env=slow) as b,
    ):
        yield a, b


async def test_a_pull_on_b_sees_a_commit_on_a_at_once(slow_pair):
    a, b = slow_pair
    api_a, api_b = Api(AsyncHTTPClient(), a.url), Api(AsyncHTTPClient(), b.url)
    space = await api_a.create_space()
    writer = uid("writer-")
    await api_a.push(space, writer, [mutation(1, "w1", args=4)])
    before = (await api_b.pull(space, "reader")).body
    assert before["patch"] == [{"op": "put", "key": "count", "value": 4}]
    assert (await api_b.pull(space, "reader", before["cookie"])).body["patch"] == []  # unchanged
    # A's listeners are poked now and pull from B, whose stream is 3 s behind.
    await api_a.push(space, writer, [mutation(2, "w1", args=3)])
    after = (await api_b.pull(space, "reader", before["cookie"])).body
    assert after["cookie"] > before["cookie"]
    assert after["patch"] == [{"op": "put", "key": "count", "value": 7}]


async def test_writes_that_move_no_version_never_hide_a_commit(pair):
    """Binding a new group (by a push that applies nothing, or a pull) writes no version:
    the next real commit is poked in the other process, once."""
    a, b = pair
    api_a = Api(AsyncHTTPClient(), a.url)
    space = await api_a.create_space()
    listener = await listen(b.url, space)
    try:
        assert (await api_a.push(space, uid("new-"), [])).status == 200  # a group, nothing applied
        assert (await api_a.pull(space, uid("new-"))).status == 200  # a group bound by a pull
        r = await api_a.push(space, uid("writer-"), [mutation(1, "w1", args=5)])
        assert (r.status, r.body) == (200, {})
        await listener.wait_for("poke", timeout=10.0)
        assert await Api(AsyncHTTPClient(), b.url).view(space) == {"count": 5}
    finally:
        listener.close()
