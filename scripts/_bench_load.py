"""A load worker process for scripts/bench.py: SSE listeners and push writers.

bench.py starts several of these so that listener and writer load is not limited by
one Python process. It reads one JSON command per line on stdin and answers one JSON
line on stdout. Times are time.monotonic(), which every process on the machine shares,
so the parent can subtract its own timestamps from them.

Commands:
  {"cmd": "listen", "url", "space", "n", "concurrency", "timeout"}  open n SSE listeners
  {"cmd": "await_pokes", "since", "timeout"}  first poke after `since` at every listener
  {"cmd": "close"}                             close every listener
  {"cmd": "write", "url", "writers", "start_at", "seconds", "timeout"}  run push writers
  {"cmd": "quit"}
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import socket
import struct
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

from _bench_http import Connection, push_bytes, split_url

from server.testing import SSE, raise_open_files

POKE = b"data: poke"
HELLO = b"data: hello"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Listener(SSE):
    """One poke stream that keeps only the times its pokes arrived, and tells its pool."""

    def __init__(self, request: bytes, pool: Listeners) -> None:
        super().__init__(request)
        self.pool = pool
        self.hello: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.hello.add_done_callback(lambda f: f.cancelled() or f.exception())  # mark as retrieved
        self.opened = False
        self.arrivals: list[float] = []
        self.closed = False

    def on_event(self, event: bytes, at: float) -> None:
        if event == POKE:
            if self.opened:
                self.arrivals.append(at)
                self.pool.on_poke(self)
        elif event.endswith(HELLO) and not self.hello.done():  # after its retry: line
            self.opened = True
            self.hello.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.hello.done():
            self.hello.set_exception(exc or ConnectionResetError("closed before hello"))
        if not self.closed:  # not closed by us: the server ended it
            self.closed = True
            self.pool.on_lost(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class HTTPStatusError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def outcome(error: BaseException) -> str:
    """The name a failed connection is counted under."""
    if isinstance(error, HTTPStatusError):
        return f"http_{error.status}"
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "other"


class Listeners:
    def __init__(self) -> None:
        self.live: list[Listener] = []
        self.since: float | None = None
        self.waiting = 0
        self.done = asyncio.Event()
        self.lost_after_hello = 0

    async def open(self, url: str, space: str, n: int, concurrency: int, timeout: float) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        examples: dict[str, str] = {}
        gate = asyncio.Semaphore(concurrency) if concurrency > 0 else None

        async def one() -> None:
            listener: Listener | None = None
            try:
                async with asyncio.timeout(timeout):
                    listener = await Listener.open(url, space, timeout, pool=self)
                    if listener.status != 200:
                        raise HTTPStatusError(listener.status)
                    await listener.hello
                self.live.append(listener)
                counts["ok"] += 1
            except (OSError, TimeoutError, HTTPStatusError) as e:
                if listener is not None:
                    listener.abort()
                name = outcome(e)
                counts[name] += 1
                examples.setdefault(name, repr(e))

        async def gated() -> None:
            if gate is None:
                await one()
            else:
                async with gate:
                    await one()

        started = time.monotonic()
        await asyncio.gather(*(gated() for _ in range(n)))
        return {"counts": dict(counts), "examples": examples, "seconds": time.monotonic() - started}

    def on_poke(self, listener: Listener) -> None:
        since = self.since
        if since is None:
            return
        first_after = len(listener.arrivals) == 1 or listener.arrivals[-2] <= since
        if first_after and listener.arrivals[-1] > since:
            self.waiting -= 1
            if self.waiting <= 0:
                self.done.set()

    def on_lost(self, listener: Listener) -> None:
        if listener.opened:
            self.lost_after_hello += 1
            if self.since is not None and not self._arrived(listener, self.since):
                self.waiting -= 1
                if self.waiting <= 0:
                    self.done.set()

    @staticmethod
    def _arrived(listener: Listener, since: float) -> bool:
        return bool(listener.arrivals) and listener.arrivals[-1] > since

    async def await_pokes(self, since: float, timeout: float) -> dict[str, Any]:
        """Wait until every open listener got a poke after `since`; their first such times."""
        self.since = since
        self.done.clear()
        self.waiting = sum(1 for x in self.live if not x.closed and not self._arrived(x, since))
        if self.waiting > 0:
            try:
                async with asyncio.timeout(timeout):
                    await self.done.wait()
            except TimeoutError:
                pass
        self.since = None
        arrivals = []
        missing = 0
        for x in self.live:
            after = [a for a in x.arrivals if a > since]
            if after:
                arrivals.append(after[0])
            else:
                missing += 1
        return {"arrivals": arrivals, "missing": missing}

    def close(self) -> dict[str, Any]:
        """Close with a reset: tens of thousands of closes leave no TIME_WAIT ports behind
        here for the next scenario (the server sees the same end of stream either way)."""
        closed = 0
        for x in self.live:
            if x.transport is not None and not x.closed:
                sock = x.transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                x.closed = True  # its connection_lost comes later and is no loss
                x.transport.abort()
                closed += 1
        lost = self.lost_after_hello
        self.live = []
        self.lost_after_hello = 0
        return {"closed": closed, "lost_before_close": lost}


async def write(
    url: str, writers: list[dict[str, str]], start_at: float, seconds: float, timeout: float
) -> dict[str, Any]:
    """Each writer pushes one increment per request, sequential mutation ids, until the end."""
    host, port = split_url(url)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    end = start_at + seconds
    in_window = 0  # accepted pushes answered before the end: the rate counts only these

    async def writer(space: str, group: str, client: str) -> None:
        nonlocal in_window
        connection = Connection(host, port, timeout)
        path = f"/api/replicache/push?spaceID={quote(space)}"
        mutation_id = 1
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        while time.monotonic() < end:
            started = time.perf_counter()
            try:
                status, body = await connection.request("POST", path, push_bytes(group, client, mutation_id))
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                # The push may or may not have applied: resending the same id is safe.
                errors[type(e).__name__] += 1
                continue
            latencies.append(time.perf_counter() - started)
            accepted = status == 200 and body.strip() == b"{}"
            statuses["200" if accepted else f"{status}:{body[:60].decode(errors='replace')}"] += 1
            if accepted:
                mutation_id += 1
                in_window += time.monotonic() <= end
        connection.close()

    cpu, wall = cpu_seconds(), time.monotonic()
    await asyncio.gather(*(writer(w["space"], w["group"], w["client"]) for w in writers))
    busy = (cpu_seconds() - cpu) / max(1e-9, time.monotonic() - max(wall, start_at))
    return {
        "latencies": latencies,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "in_window": in_window,
        "cpu": busy,
    }


async def main() -> None:
    raise_open_files()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    listeners = Listeners()
    while line := await stdin.readline():
        command = json.loads(line)
        name = command.pop("cmd")
        cpu, wall = cpu_seconds(), time.monotonic()
        if name == "listen":
            reply = await listeners.open(**command)
            # Thousands of long-lived listeners: left to the garbage collector, each full
            # collection walks them all, mid fan-out (the selector's tuples for every ready
            # socket set one off). Frozen, it skips them until they are closed.
            gc.freeze()
        elif name == "await_pokes":
            reply = await listeners.await_pokes(**command)
        elif name == "close":
            reply = listeners.close()
            gc.unfreeze()  # what they leave in cycles is collectable again
        elif name == "write":
            reply = await write(**command)
        elif name == "quit":
            return
        else:
            reply = {"error": f"unknown command {name!r}"}
        reply.setdefault("cpu", (cpu_seconds() - cpu) / max(1e-9, time.monotonic() - wall))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
