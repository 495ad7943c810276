"""The SSE poke stream on a real server and real sockets: frames, ordering against
commits, coalescing, isolation, lifecycle, caps and fan-out."""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import weakref

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.iostream import IOStream

from server import pokes
from server.config import Settings
from server.testing import SSE, address, listen, poke_request, stuck_socket
from tests.helpers import Api, mutation, need_open_files, uid

pytestmark = pytest.mark.gen_test

FAST_BEAT = {"heartbeat_seconds": 0.05}


async def bump(api, space: str) -> None:
    """One increment from a new client: a push that commits."""
    r = await api.push(space, uid("g-"), [mutation(1, uid("c-"))])
    assert r.status == 200, r.body


async def count(api, space: str) -> int:
    return (await api.view(space)).get("count", 0)


async def test_headers_and_hello(api, base_url):
    space = await api.create_space()
    clients = [await SSE.open(base_url, space) for _ in range(5)]
    sse = clients[0]
    assert sse.status == 200
    assert sse.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert sse.headers["cache-control"] == "no-cache, no-transform"
    assert sse.headers["x-accel-buffering"] == "no"
    assert sse.headers["access-control-allow-origin"] == "*"
    assert sse.headers["transfer-encoding"] == "chunked"
    retries = set()
    for client in clients:
        hello = await client.frame()
        assert hello is not None and hello["data"] == "hello"
        assert 1000 <= int(hello["retry"]) <= 5000
        retries.add(hello["retry"])
        client.close()
    assert len(retries) > 1  # randomised, so reconnects spread out


class Reader:
    """What a real client does with a poke: pull with its cookie and apply the patch."""

    def __init__(self, api, space: str) -> None:
        self.api, self.space, self.group = api, space, uid("reader-")
        self.cookie = None
        self.view: dict = {}

    async def pull(self) -> int:
        r = await self.api.pull(self.space, self.group, self.cookie)
        assert r.status == 200 and "error" not in r.body, r.body
        for op in r.body["patch"]:
            if op["op"] == "clear":
                self.view.clear()
            elif op["op"] == "put":
                self.view[op["key"]] = op["value"]
            else:
                self.view.pop(op["key"], None)
        self.cookie = r.body["cookie"]
        return self.view.get("count", 0)


POKE_AFTER_COMMIT_ROUNDS = 20


async def test_a_pull_started_on_the_poke_sees_the_push_before_it_is_answered(api, base_url):
    """Checklist 16: every listener of the space is poked after the data is readable.

    Each listener pulls the moment its poke arrives, while the push that caused it is
    still unanswered as far as the test knows; a poke sent before the commit would give
    a pull that misses the write (with the pull cache, an "unchanged" answer)."""
    space = await api.create_space()
    listeners = [await listen(base_url, space) for _ in range(3)]
    readers = [Reader(api, space) for _ in listeners]
    for reader in readers:
        assert await reader.pull() == 0

    async def on_poke(sse: SSE, reader: Reader) -> int:
        await next_poke(sse)
        return await reader.pull()

    for n in range(1, POKE_AFTER_COMMIT_ROUNDS + 1):
        push = asyncio.ensure_future(api.push(space, "writer", [mutation(n, "w1")]))
        seen = await asyncio.gather(*(on_poke(sse, r) for sse, r in zip(listeners, readers, strict=True)))
        assert seen == [n] * len(listeners), f"round {n}: a pull on the poke saw {seen}"
        assert (await push).status == 200
    for sse in listeners:
        sse.close()


@pytest.mark.parametrize("settings", [FAST_BEAT], indirect=True)
async def test_heartbeat_with_short_interval(api, base_url, settings):
    space = await api.create_space()
    sse = await listen(base_url, space)
    assert [await sse.data(timeout=5) for _ in range(3)] == ["beat"] * 3
    sse.close()
    assert Settings().heartbeat_seconds <= 30  # checklist 34: a beat at least every 30 s by default


async def test_space_isolation(api, base_url, hub):
    a, b = await api.create_space(), await api.create_space()
    listen_a, listen_b = await listen(base_url, a), await listen(base_url, b)
    with hub.listen(a) as channel_a:
        await bump(api, b)
        await next_poke(listen_b)
        # B's commit is done and poked: had it poked A too, A's sequence would have moved.
        assert channel_a.seq == 0
        await bump(api, a)
        await next_poke(listen_a)
        assert channel_a.seq == 1
    assert await count(api, a) == 1 and await count(api, b) == 1
    listen_a.close()
    listen_b.close()


async def next_poke(sse: SSE) -> None:
    """Read past heartbeats to the next poke."""
    while (data := await sse.data()) == "beat":
        pass
    assert data == "poke"


@pytest.mark.parametrize("settings", [FAST_BEAT], indirect=True)
async def test_burst_of_pokes_coalesces(api, base_url, hub, settings):
    space = await api.create_space()
    sse = await listen(base_url, space)
    for _ in range(50):  # within one loop iteration: the listener wakes once
        hub.poke(space)
    await next_poke(sse)
    assert await sse.data() == "beat"
    sse.close()


async def test_pokes_read_during_a_burst_coalesce_and_the_last_shows_every_push(api, base_url):
    """Pokes are read and pulled on while the pushes run: fewer pokes than pushes may come,
    but one comes after the last commit, so a pull on it shows every push."""
    space = await api.create_space()
    sse = await listen(base_url, space)
    reader = Reader(api, space)
    writers, each = 6, 5
    pushes = writers * each
    seen: list[tuple[int, bool]] = []  # per poke: the count its pull saw, pushes all answered

    async def read_pokes() -> None:
        while True:
            await next_poke(sse)
            seen.append((await reader.pull(), answered.done()))
            if seen[-1][0] == pushes:
                return

    http = [AsyncHTTPClient(force_instance=True) for _ in range(writers)]

    async def writer(w: int) -> list[int]:  # one after another: commits spread over time
        api = Api(http[w], base_url)
        return [(await api.push(space, f"g{w}", [mutation(i, f"c{w}")])).status for i in range(1, each + 1)]

    answered = asyncio.gather(*(writer(w) for w in range(writers)))
    reading = asyncio.ensure_future(read_pokes())  # runs alongside the writers
    results = await answered
    assert [s for statuses in results for s in statuses] == [200] * pushes
    try:
        await asyncio.wait_for(reading, timeout=10)  # the last poke is not lost
    except TimeoutError:
        raise AssertionError(f"no poke showed all {pushes} pushes; pokes read: {seen}") from None
    finally:
        reading.cancel()
        for client in http:
            client.close()
    print(f"{len(seen)} pokes for {pushes} pushes; (count, all answered) per poke: {seen}")
    assert 1 <= len(seen) <= pushes
    assert [c for c, _ in seen] == sorted(c for c, _ in seen)  # each pull shows at least the last
    sse.close()


async def test_unknown_missing_and_invalid_space(http_server, base_url):
    missing = await SSE.open(base_url, "no-such-space")
    assert missing.status == 404 and missing.headers["content-type"].startswith("application/json")
    assert (await missing.json())["error"] == "SpaceNotFound"
    invalid = await SSE.open(base_url, "not a space!")
    assert invalid.status == 400
    assert (await invalid.json())["error"] == "InvalidSpaceID"
    for sse in (missing, invalid):
        sse.close()


def handler_tasks() -> int:
    """Request handler coroutines still running in this loop."""
    return sum(1 for t in asyncio.all_tasks() if "RequestHandler._execute" in t.get_coro().__qualname__)


async def test_disconnect_removes_listener_then_space(api, base_url, hub, caplog):
    space, other = await api.create_space(), await api.create_space()
    first, second, third = [await listen(base_url, s) for s in (space, space, other)]
    assert hub.listener_count(space) == 2 and hub.space_count() == 2 and hub.listeners == 3
    assert handler_tasks() == 3
    first.close()
    assert await hub.wait_until(lambda: hub.listener_count(space) == 1, timeout=5)
    assert hub.space_count() == 2
    second.close()
    assert await hub.wait_until(lambda: hub.space_count() == 1, timeout=5)
    assert hub.listener_count(space) == 0 and hub.listeners == 1
    third.close()
    assert await hub.wait_until(lambda: hub.listeners == 0, timeout=5)
    assert hub.space_count() == 0
    # Nothing of the connections lives on: no handler coroutine is left running.
    assert await poll(lambda: handler_tasks() == 0)
    hub.poke(space)  # a poke for a space nobody listens to creates nothing
    assert hub.space_count() == 0
    assert not errors(caplog)


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


async def test_clients_hanging_up_at_once_leave_nothing(api, base_url, hub, caplog):
    space = await api.create_space()
    keep = await listen(base_url, space)  # the others skip the space lookup then
    for lookup in (False, True):
        if lookup:
            keep.close()
            assert await hub.wait_until(lambda: hub.listeners == 0, timeout=5)
        for _ in range(30):
            reader, writer = await asyncio.open_connection(*address(base_url))
            writer.write(poke_request(space))
            writer.close()
        left = 0 if lookup else 1
        assert await poll(lambda left=left: handler_tasks() == left)
    assert hub.listeners == 0 and hub.space_count() == 0
    assert not errors(caplog)


async def poll(done, timeout: float = 5.0) -> bool:
    """For states that have no event: check every 10 ms until a deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


CAPS = {"poke_max_per_space": 2, "poke_max_listeners": 3}


@pytest.mark.parametrize("settings", [CAPS], indirect=True)
async def test_caps_refuse_with_429_per_space_and_503_per_process(api, base_url, hub, settings):
    a, b, c = await api.create_space(), await api.create_space(), await api.create_space()
    kept = [await listen(base_url, a), await listen(base_url, a)]
    refused = await SSE.open(base_url, a)
    assert refused.status == 429
    assert (await refused.json())["error"] == "TooManyListeners"
    kept.append(await listen(base_url, b))
    full = await SSE.open(base_url, c)
    assert full.status == 503
    assert (await full.json())["error"] == "ServerFull"
    assert hub.listeners == 3
    # The listeners already in keep working.
    await bump(api, a)
    assert [await k.data() for k in kept[:2]] == ["poke", "poke"]
    await bump(api, b)
    assert await kept[2].data() == "poke"
    # A freed place can be taken again.
    kept.pop(0).close()
    assert await hub.wait_until(lambda: hub.listener_count(a) == 1, timeout=5)
    kept.append(await listen(base_url, a))
    for sse in [*kept, refused, full]:
        sse.close()


def test_caps_defaults():
    s = Settings()
    assert s.listen_backlog >= 1024
    assert s.poke_max_per_space <= s.poke_max_listeners


@pytest.fixture
def many_files() -> None:
    """500 listeners need about 1,000 sockets in this process (both ends)."""
    need_open_files(1200)


@pytest.mark.gen_test(timeout=120)
@pytest.mark.parametrize("settings", [{"poke_max_per_address": 0}], indirect=True)  # all from 127.0.0.1
async def test_500_listeners_in_one_space_all_get_the_poke(api, base_url, hub, many_files, settings):
    space = await api.create_space()
    listeners = await asyncio.gather(*(listen(base_url, space) for _ in range(500)))
    assert hub.listener_count(space) == 500 and hub.space_count() == 1
    await bump(api, space)
    frames = await asyncio.gather(*(sse.data(timeout=30) for sse in listeners))
    assert frames == ["poke"] * 500
    for sse in listeners:
        sse.close()
    assert await hub.wait_until(lambda: hub.listeners == 0, timeout=30)


@pytest.mark.gen_test(timeout=120)
@pytest.mark.parametrize("settings", [{"poke_buffer_bytes": 1024}], indirect=True)
async def test_stuck_client_is_dropped_and_never_delays_the_others(api, base_url, hub, settings, caplog):
    space = await api.create_space()
    healthy = await listen(base_url, space)
    stuck = await stuck_socket(base_url, space)
    try:
        assert await hub.wait_until(lambda: hub.listener_count(space) == 2, timeout=5)
        pokes = 0
        while hub.listener_count(space) == 2:
            # The healthy listener gets each poke promptly while the stuck one backs up.
            hub.poke(space)
            assert await healthy.data(timeout=5) == "poke"
            pokes += 1
            assert pokes < 50_000, "the stuck listener was never dropped"
        assert hub.listener_count(space) == 1
        await bump(api, space)
        assert await healthy.data(timeout=5) == "poke"
    finally:
        stuck.close()
        healthy.close()
    assert not errors(caplog)


def server_stream(client_port: int) -> IOStream:
    for o in gc.get_objects():
        if type(o) is IOStream and not o.closed():
            try:
                if o.socket.getpeername()[1] == client_port:
                    return o
            except OSError:
                continue
    raise LookupError(client_port)


@pytest.mark.parametrize("reset", [False, True])
async def test_a_listener_that_hangs_up_is_freed_without_the_garbage_collector(api, base_url, hub, reset):
    space = await api.create_space()
    sse = await listen(base_url, space)
    sock = sse.transport.get_extra_info("socket")
    stream = weakref.ref(server_stream(sock.getsockname()[1]))
    gc.disable()  # what is freed now is freed by reference counting alone
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sse.close()
        assert await hub.wait_until(lambda: hub.listeners == 0, timeout=5)
        assert await poll(lambda: stream() is None)
    finally:
        gc.enable()


async def test_memory_is_given_back_after_a_wave_of_hang_ups(hub, monkeypatch, caplog):
    monkeypatch.setattr(pokes, "RECLAIM_DELAY", 0.0)
    caplog.set_level("INFO", logger="server.pokes")
    n = pokes.RECLAIM_AFTER
    listening = [hub.listen("wave") for _ in range(2 * n)]
    for one in listening:
        one.__enter__()
    for one in listening[: n - 1]:  # fewer than RECLAIM_AFTER gone: nothing to do
        one.__exit__(None, None, None)
    await asyncio.sleep(0.05)
    assert hub.reclaims == 0
    listening[n - 1].__exit__(None, None, None)
    assert await poll(lambda: hub.reclaims == 1)
    assert f"gave memory back after {n} poke listeners left" in caplog.text
    for one in listening[n:]:  # the rest: counted from the listeners left at the last one
        one.__exit__(None, None, None)
    assert await poll(lambda: hub.reclaims == 2)
    assert hub.listeners == 0 and hub.space_count() == 0
