"""Cross-process poke latency: two server processes on one embedded database.

A listener on process A and one on process B; N sequential single-mutation pushes through B.
For each push: time from sending it to the poke on A (change stream path), to the poke on B
(local path), and to B's answer. Prints p50/p99 in ms (nearest rank: server.testing.percentile).

    .venv/bin/python scripts/poke_latency.py [--pushes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from typing import Any

from tornado.httpclient import AsyncHTTPClient

from server.embedded import EmbeddedMongo
from server.testing import SSE, LiveServer, listen, mutation, percentile, push_body


async def post(http: AsyncHTTPClient, url: str, body: dict[str, Any]) -> Any:
    headers = {"Content-Type": "application/json"}
    response = await http.fetch(url, method="POST", body=json.dumps(body), headers=headers, raise_error=False)
    if response.code != 200:
        raise RuntimeError(f"{url} answered {response.code}: {response.body[:200]!r}")
    return json.loads(response.body)


async def timed_poke(listener: SSE, start: float) -> float:
    await listener.wait_for("poke", timeout=10)  # heartbeats are skipped
    return time.perf_counter() - start


async def measure(a: LiveServer, b: LiveServer, pushes: int) -> dict[str, list[float]]:
    http = AsyncHTTPClient()
    space = (await post(http, f"{b.url}/api/replicache/createSpace", {}))["spaceID"]
    on_a, on_b = await listen(a.url, space), await listen(b.url, space)
    names = ("poke on A (other process)", "poke on B (same process)", "push answered by B")
    times: dict[str, list[float]] = {name: [] for name in names}
    duplicates = 0
    try:
        for i in range(1, pushes + 6):
            for listener in (on_a, on_b):  # a poke left over would be a duplicate
                duplicates += sum(frame.get("data") == "poke" for frame in listener.drain())
            start = time.perf_counter()
            poke_a = asyncio.create_task(timed_poke(on_a, start))
            poke_b = asyncio.create_task(timed_poke(on_b, start))
            await post(
                http, f"{b.url}/api/replicache/push?spaceID={space}", push_body("g", [mutation(i, "c")])
            )
            answered = time.perf_counter() - start
            results = (await poke_a, await poke_b, answered)
            if i > 5:  # the first few warm up connections and caches
                for name, value in zip(times, results, strict=True):
                    times[name].append(value * 1000)
        await asyncio.sleep(0.5)  # let late pokes arrive, then count them
        duplicates += sum(frame.get("data") == "poke" for x in (on_a, on_b) for frame in x.drain())
    finally:
        on_a.close()
        on_b.close()
    print(f"pokes beyond one per push per listener: {duplicates}")
    return times


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
            f"  {name:38} p50 {percentile(values, 50):6.1f}  p99 {percentile(values, 99):6.1f}"
            f"  max {max(values):6.1f}"
        )


if __name__ == "__main__":
    main()
