"""What every scenario of scripts/bench.py is given: the sizes, the server under test
(and how to start another), the load workers, and where results go."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import _bench_report as report
import _bench_soak as soak
from _bench_http import Connection, split_url
from _bench_workers import Worker, split

from server.testing import LiveServer

# Thousands of clients from one loopback address: lift the per-address caps of a server
# started here (README Threat model). A --url server needs them lifted, or 0, too.
ONE_ADDRESS = ["--max-connections-per-address", "0", "--poke-max-per-address", "0"]


@dataclass
class Sizes:
    writers: int = 20
    seconds: float = 10.0
    count: int = 500
    fanout: tuple[int, ...] = (1000, 5000)
    fanout_pushes: int = 20
    idle: int = 10_000
    burst: int = 10_000
    spaces: int = 20_000
    soak: soak.SoakSizes = field(default_factory=soak.SoakSizes)


QUICK = Sizes(
    writers=4,
    seconds=1.0,
    count=30,
    fanout=(20, 50),
    fanout_pushes=3,
    idle=100,
    burst=100,
    spaces=200,
    soak=soak.QUICK,
)


async def start_server(data_dir: str, flags: list[str]) -> LiveServer:
    """`python -m server` on a free loopback port with its own embedded database in data_dir,
    and no tokens: the bench sends none. Whoever starts one stops it (close())."""
    server = LiveServer(*flags, data_dir=data_dir, env={"AUTH_SECRET": ""})
    return await asyncio.to_thread(server.start, 120.0)


@dataclass
class Bench:
    url: str
    pid: int | None
    sizes: Sizes
    workers: list[Worker]
    writer_procs: int
    timeout: float
    server_flags: list[str]
    compare_url: str | None
    tmp: str  # a directory for data dirs; the run removes it, after stopping its servers
    results: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def connection(self, url: str | None = None) -> Connection:
        host, port = split_url(url or self.url)
        return Connection(host, port, self.timeout)

    async def new_space(self, label: str, url: str | None = None) -> str:
        space = f"bench-{label}-{secrets.token_hex(4)}"
        status, body = await self.connection(url).post_json("/api/replicache/createSpace", {"spaceID": space})
        if status != 200:
            raise RuntimeError(f"createSpace failed: {status} {body}")
        return space

    def emit(self, name: str, result: dict[str, Any], notes: str = "") -> None:
        print(report.row(name, result, notes), flush=True)

    def sample(self, chart: str, label: str, values: list[float]) -> None:
        self.samples.setdefault(chart, {})[label] = values

    async def listen(self, space: str, n: int, concurrency: int) -> dict[str, Any]:
        """Open n listeners split over the workers; counts of outcomes summed."""
        shares = split(n, len(self.workers))
        replies = await asyncio.gather(
            *(
                w.call(
                    {
                        "cmd": "listen",
                        "url": self.url,
                        "space": space,
                        "n": share,
                        "concurrency": concurrency,
                        "timeout": max(self.timeout, 60.0),
                    }
                )
                for w, share in zip(self.workers, shares, strict=True)
            )
        )
        counts: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for reply in replies:
            counts.update(reply["counts"])
            examples.update(reply["examples"])
        return {
            "counts": dict(counts),
            "examples": examples,
            "seconds": round(max(r["seconds"] for r in replies), 3),
            "worker_cpu": [round(r["cpu"], 2) for r in replies],
        }

    async def close_listeners(self) -> int:
        replies = await asyncio.gather(*(w.call({"cmd": "close"}) for w in self.workers))
        return sum(r["lost_before_close"] for r in replies)
