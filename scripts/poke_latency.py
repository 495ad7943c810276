"""Cross-process poke latency: two server processes on one embedded database.

A listener on process A and one on process B; N sequential single-mutation pushes through B.
For each push: time from sending it to the poke on A (change stream path), to the poke on B
(local path), and to B's answer. Prints p50/p99 in ms.

    .venv/bin/python scripts/poke_latency.py [--pushes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tornado.httpclient import AsyncHTTPClient  # noqa: E402

from server.embedded import EmbeddedMongo  # noqa: E402
from tests.helpers import Api, mutation  # noqa: E402
from tests.live import LiveServer  # noqa: E402


class Listener:
    """A Server-Sent Events client: each frame's data ("hello", "poke", "beat") is queued."""

    def __init__(self, url: str, space: str) -> None:
        self.frames: asyncio.Queue[str] = asyncio.Queue()
        self._buffer = b""
        self._http = AsyncHTTPClient(force_instance=True)
        self.done = self._http.fetch(
            f"{url}/api/replicache/poke?spaceID={space}",
            streaming_callback=self._on_chunk,
            request_timeout=3600,
            raise_error=False,
        )

    def _on_chunk(self, chunk: bytes) -> None:
        self._buffer += chunk
        while b"\n\n" in self._buffer:
            frame, self._buffer = self._buffer.split(b"\n\n", 1)
            for line in frame.split(b"\n"):
                if line.startswith(b"data: "):
                    self.frames.put_nowait(line[6:].decode())

    async def next(self, timeout: float) -> str:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def poke(self, timeout: float) -> None:
        """Wait for the next poke, skipping heartbeats."""
        async with asyncio.timeout(timeout):
            while await self.frames.get() != "poke":
                pass

    def close(self) -> None:
        self.done.add_done_callback(lambda f: f.exception())  # closing ends the fetch with 599
        self._http.close()


async def listen(url: str, space: str) -> Listener:
    """A listener that the server has registered (it sent hello)."""
    listener = Listener(url, space)
    first = await listener.next(10)
    if first != "hello":
        raise RuntimeError(f"expected hello, got {first!r}")
    return listener


async def timed_poke(listener: Listener, start: float) -> float:
    await listener.poke(timeout=10)
    return time.perf_counter() - start


async def measure(a: LiveServer, b: LiveServer, pushes: int) -> dict[str, list[float]]:
    api_b = Api(AsyncHTTPClient(), b.url)
    space = await api_b.create_space()
    on_a, on_b = await listen(a.url, space), await listen(b.url, space)
    names = ("poke on A (other process)", "poke on B (same process)", "push answered by B")
    times: dict[str, list[float]] = {name: [] for name in names}
    duplicates = 0
    try:
        for i in range(1, pushes + 6):
            for listener in (on_a, on_b):  # a poke left over would be a duplicate
                while not listener.frames.empty():
                    duplicates += listener.frames.get_nowait() == "poke"
            start = time.perf_counter()
            poke_a = asyncio.create_task(timed_poke(on_a, start))
            poke_b = asyncio.create_task(timed_poke(on_b, start))
            r = await api_b.push(space, "g", [mutation(i, "c")])
            answered = time.perf_counter() - start
            assert r.status == 200, r.body
            results = (await poke_a, await poke_b, answered)
            if i > 5:  # the first few warm up connections and caches
                for name, value in zip(times, results, strict=True):
                    times[name].append(value * 1000)
        await asyncio.sleep(0.5)  # let late pokes arrive, then count them
        duplicates += sum(listener.frames.qsize() for listener in (on_a, on_b))
    finally:
        on_a.close()
        on_b.close()
    print(f"pokes beyond one per push per listener: {duplicates}")
    return times


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = EmbeddedMongo(tmp)
        uri = db.start()
        try:
            with LiveServer(mongodb_uri=uri) as a, LiveServer(mongodb_uri=uri) as b:
                times = asyncio.run(measure(a, b, args.pushes))
        finally:
            db.stop()
    other, same = times["poke on A (other process)"], times["poke on B (same process)"]
    times["A minus B (the change stream's cost)"] = [a - b for a, b in zip(other, same, strict=True)]
    print(f"{args.pushes} sequential pushes through B, listeners on A and B (ms from sending the push):")
    for name, values in times.items():
        print(
            f"  {name:38} p50 {statistics.median(values):6.1f}  p99 {percentile(values, 99):6.1f}"
            f"  max {max(values):6.1f}"
        )


if __name__ == "__main__":
    main()
